// Command kerneltest runs the live test binary under a stock Debian kernel
// in qemu, for the features this machine's kernel lacks (ipvlan). It builds
// an initramfs from busybox, the kernel modules the tests need (with their
// dependencies, read from each module's .modinfo) and the static test
// binary, boots it, and exits with the tests' result.
//
// Exit status: 0 the tests passed, 1 they failed (or the guest never said),
// 0 with a loud SKIP line when qemu cannot start at all.
package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

func main() {
	var (
		root    = flag.String("kernel-root", "", "directory the linux-image .deb was extracted into")
		mods    = flag.String("modules", "crc32c_generic veth bridge macvlan ipvlan vxlan nf_tables nft_chain_nat nft_nat nft_masq nft_fib_inet sch_netem sch_tbf inet_diag tcp_diag udp_diag unix_diag af_packet_diag xfrm_user esp4 authenc", "modules to load, with their dependencies")
		testBin = flag.String("test", "", "static test binary (CGO_ENABLED=0 go test -c)")
		cliBin  = flag.String("bin", "", "static netplan-lab binary, for the tests that run the command")
		src     = flag.String("src", ".", "the repository: examples/ and internal/live/ are copied in")
		run     = flag.String("run", "", "-test.run pattern")
		timeout = flag.Duration("timeout", 20*time.Minute, "how long the guest may take")
	)
	flag.Parse()
	if err := realMain(*root, strings.Fields(*mods), *testBin, *cliBin, *src, *run, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "kerneltest:", err)
		os.Exit(1)
	}
}

func realMain(root string, mods []string, testBin, cliBin, src, run string, timeout time.Duration) error {
	kernels, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(kernels) != 1 {
		return fmt.Errorf("want one vmlinuz under %s/boot, found %v", root, kernels)
	}
	version := strings.TrimPrefix(filepath.Base(kernels[0]), "vmlinuz-")
	modDir := filepath.Join(root, "lib", "modules", version)
	order, err := resolveModules(modDir, mods)
	if err != nil {
		return err
	}
	fmt.Printf("kerneltest: kernel %s, modules in load order: %s\n", version, strings.Join(names(order), " "))

	initrd, err := buildInitramfs(order, testBin, cliBin, src, run)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp("", "netplan-lab-initrd-*.gz")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(initrd); err != nil {
		return err
	}
	tmp.Close()
	return boot(kernels[0], tmp.Name(), timeout)
}

type module struct{ name, path string }

func names(ms []module) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.name)
	}
	return out
}

func modName(path string) string {
	base := filepath.Base(path)
	base = strings.TrimSuffix(strings.TrimSuffix(base, ".xz"), ".ko")
	return strings.ReplaceAll(base, "-", "_")
}

// resolveModules finds each wanted module and its dependencies, in an
// order insmod can load them. Built-in ones (not found as .ko) are skipped.
func resolveModules(dir string, wanted []string) ([]module, error) {
	index := map[string]string{}
	err := filepath.WalkDir(filepath.Join(dir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasSuffix(p, ".ko") || strings.HasSuffix(p, ".ko.xz") {
			index[modName(p)] = p
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	builtin := map[string]bool{}
	if b, err := os.ReadFile(filepath.Join(dir, "modules.builtin")); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if l != "" {
				builtin[modName(l)] = true
			}
		}
	}
	var order []module
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(n string) error
	visit = func(n string) error {
		n = strings.ReplaceAll(n, "-", "_")
		switch state[n] {
		case 1:
			return fmt.Errorf("module dependency cycle at %s", n)
		case 2:
			return nil
		}
		p, ok := index[n]
		if !ok {
			if builtin[n] {
				state[n] = 2
				return nil
			}
			return fmt.Errorf("module %s not found under %s (and not built in)", n, dir)
		}
		state[n] = 1
		deps, err := moduleDeps(p)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		for _, d := range deps {
			if err := visit(d); err != nil {
				return err
			}
		}
		state[n] = 2
		order = append(order, module{n, p})
		return nil
	}
	for _, w := range wanted {
		if err := visit(w); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// moduleDeps reads depends= from a module's .modinfo section.
func moduleDeps(path string) ([]string, error) {
	data, err := readModule(path)
	if err != nil {
		return nil, err
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, errors.New("no .modinfo section")
	}
	info, err := sec.Data()
	if err != nil {
		return nil, err
	}
	for _, kv := range bytes.Split(info, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}

func readModule(path string) ([]byte, error) {
	if strings.HasSuffix(path, ".xz") {
		return exec.Command("xz", "-dc", path).Output()
	}
	return os.ReadFile(path)
}

// newc cpio writer: just what an initramfs needs.
type cpioWriter struct {
	w   io.Writer
	ino int
}

func (c *cpioWriter) entry(name string, mode uint32, data []byte) error {
	c.ino++
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
	buf := []byte(hdr + name + "\x00")
	for len(buf)%4 != 0 {
		buf = append(buf, 0)
	}
	buf = append(buf, data...)
	for len(buf)%4 != 0 {
		buf = append(buf, 0)
	}
	_, err := c.w.Write(buf)
	return err
}

func (c *cpioWriter) dir(name string) error { return c.entry(name, 0o040755, nil) }
func (c *cpioWriter) file(name string, mode uint32, data []byte) error {
	return c.entry(name, 0o100000|mode, data)
}
func (c *cpioWriter) close() error { return c.entry("TRAILER!!!", 0, nil) }

const initScript = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /run /tmp
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs run /run
mkdir -p /run/netns
for m in $(cat /modules.order); do
  insmod /modules/$m.ko || echo "kerneltest: insmod $m failed"
done
echo "kerneltest: guest up, running the live tests"
cd /src/internal/live
[ -x /netplan-lab ] && export NETPLAN_LAB_BIN=/netplan-lab
export NETPLAN_LAB_KERNELTEST=1
/live.test -test.v -test.count=1 -test.timeout=30m %s 2>&1
echo "NETPLAN-LAB-KERNEL-TEST-EXIT=$?"
poweroff -f
`

func buildInitramfs(mods []module, testBin, cliBin, src, run string) ([]byte, error) {
	var out bytes.Buffer
	gz := gzip.NewWriter(&out)
	c := &cpioWriter{w: gz}
	for _, d := range []string{"bin", "modules", "src", "src/internal", "src/internal/live", "src/internal/live/testdata", "src/examples"} {
		if err := c.dir(d); err != nil {
			return nil, err
		}
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return nil, fmt.Errorf("busybox (apt-get install busybox-static): %w", err)
	}
	if err := c.file("bin/busybox", 0o755, bb); err != nil {
		return nil, err
	}
	var order []string
	for _, m := range mods {
		data, err := readModule(m.path)
		if err != nil {
			return nil, err
		}
		if err := c.file("modules/"+m.name+".ko", 0o644, data); err != nil {
			return nil, err
		}
		order = append(order, m.name)
	}
	if err := c.file("modules.order", 0o644, []byte(strings.Join(order, "\n")+"\n")); err != nil {
		return nil, err
	}
	runArg := ""
	if run != "" {
		if !regexp.MustCompile(`^[A-Za-z0-9_/|.^$()*-]+$`).MatchString(run) {
			return nil, fmt.Errorf("run pattern %q has characters the init script does not quote", run)
		}
		runArg = "-test.run '" + run + "'"
	}
	if err := c.file("init", 0o755, []byte(fmt.Sprintf(initScript, runArg))); err != nil {
		return nil, err
	}
	bin, err := os.ReadFile(testBin)
	if err != nil {
		return nil, err
	}
	if err := c.file("live.test", 0o755, bin); err != nil {
		return nil, err
	}
	if cliBin != "" {
		cli, err := os.ReadFile(cliBin)
		if err != nil {
			return nil, err
		}
		if err := c.file("netplan-lab", 0o755, cli); err != nil {
			return nil, err
		}
	}
	for _, dir := range []string{"examples", "internal/live/testdata"} {
		files, _ := filepath.Glob(filepath.Join(src, dir, "*.yaml"))
		sort.Strings(files)
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			if err := c.file("src/"+dir+"/"+filepath.Base(f), 0o644, data); err != nil {
				return nil, err
			}
		}
	}
	if err := c.close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

func boot(kernel, initrd string, timeout time.Duration) error {
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		fmt.Println("SKIP SKIP SKIP: kerneltest: qemu-system-x86_64 is not installed; the ipvlan live tests did NOT run")
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, "-m", "1024", "-smp", "2", "-kernel", kernel, "-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 loglevel=3", "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio")
	var log bytes.Buffer
	cmd.Stdout = io.MultiWriter(os.Stdout, &log)
	cmd.Stderr = io.MultiWriter(os.Stderr, &log)
	start := time.Now()
	runErr := cmd.Run()
	out := log.String()
	if m := regexp.MustCompile(`NETPLAN-LAB-KERNEL-TEST-EXIT=(\d+)`).FindStringSubmatch(out); m != nil {
		fmt.Printf("kerneltest: guest finished in %v, tests exited %s\n", time.Since(start).Round(time.Second), m[1])
		if m[1] != "0" {
			return fmt.Errorf("the live tests failed under the stock kernel (exit %s)", m[1])
		}
		return nil
	}
	if !strings.Contains(out, "Linux version") && !strings.Contains(out, "kerneltest: guest up") {
		// qemu never got as far as starting the kernel.
		fmt.Printf("SKIP SKIP SKIP: kerneltest: qemu could not start (%v); the ipvlan live tests did NOT run\n", runErr)
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("the guest did not finish within %v", timeout)
	}
	return fmt.Errorf("the guest stopped without reporting a test result (%v)", runErr)
}
