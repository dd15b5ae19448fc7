package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/netplan-lab/netplan-lab/internal/linux"
	"github.com/netplan-lab/netplan-lab/topology"
)

func runCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "topo.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestValidateExitCodes(t *testing.T) {
	code, out, _ := runCLI("validate", "../../examples/bridge.yaml")
	if code != 0 || !strings.Contains(out, "valid") {
		t.Fatalf("valid file: code %d, out %q", code, out)
	}
	bad := writeFile(t, "name: x\nbridges: [{name: br0, colour: red}, {name: this-is-too-long-a-name}]\n")
	code, out, errOut := runCLI("validate", bad)
	if code != 1 {
		t.Fatalf("invalid file: code %d", code)
	}
	for _, want := range []string{bad + ":2:23: bridges[0].colour: unknown key", bad + ":2:44: bridges[1].name: interface name"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "error: ") {
		t.Errorf("stderr lacks the error line: %q", errOut)
	}
	code, out, _ = runCLI("validate", "-o", "json", bad)
	var v struct {
		Valid  bool `json:"valid"`
		Errors []struct {
			Line int    `json:"line"`
			Col  int    `json:"col"`
			Path string `json:"path"`
		} `json:"errors"`
	}
	if code != 1 || json.Unmarshal([]byte(out), &v) != nil || v.Valid || len(v.Errors) != 2 || v.Errors[0].Line != 2 {
		t.Fatalf("json validate: code %d, %+v, out %s", code, v, out)
	}
}

func TestBadOutputFlag(t *testing.T) {
	if code, _, errOut := runCLI("-o", "yaml", "validate", "../../examples/none.yaml"); code != 1 || !strings.Contains(errOut, "--output must be text or json") {
		t.Fatalf("code %d, stderr %q", code, errOut)
	}
}

// sandbox is a --netns name that does not exist: plan then observes an
// empty host and touches nothing. The test removes its lock file after.
func sandbox(t *testing.T) string {
	sb := fmt.Sprintf("npl-test-cli%04x", rand.Intn(0xffff))
	t.Cleanup(func() { os.Remove(linux.LockPath(sb)) })
	return sb
}

func TestPlanDetailedExitCodeAndJSON(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("CLI test skipped: plan reads the kernel, which needs root")
	}
	sb := sandbox(t)
	pfx := fmt.Sprintf("t%04x-", rand.Intn(0xffff))
	code, out, errOut := runCLI("--netns", sb, "--prefix", pfx, "plan", "--detailed-exitcode", "../../examples/veth-pair.yaml")
	if code != 2 {
		t.Fatalf("pending changes: code %d, stderr %s", code, errOut)
	}
	if !strings.Contains(out, "Plan: 4 to add, 0 to change, 0 to destroy.") {
		t.Fatalf("plan output:\n%s", out)
	}
	code, out, _ = runCLI("--netns", sb, "--prefix", pfx, "-o", "json", "plan", "../../examples/veth-pair.yaml")
	var p struct {
		SchemaVersion int `json:"schema_version"`
		Changes       []struct {
			Action string `json:"action"`
			Kind   string `json:"kind"`
		} `json:"changes"`
		Summary struct{ Add int } `json:"summary"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &p) != nil || p.SchemaVersion != 1 || p.Summary.Add != 4 || len(p.Changes) != 4 {
		t.Fatalf("json plan: code %d, %+v\n%s", code, p, out)
	}
	if _, err := os.Stat("/run/netns/" + sb); err == nil {
		t.Fatal("plan created the sandbox")
	}
}

func TestApplyPlanDestroy(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("live CLI test skipped: needs root to make namespaces")
	}
	sb := sandbox(t)
	pfx := fmt.Sprintf("t%04x-", rand.Intn(0xffff))
	args := func(a ...string) []string { return append([]string{"--netns", sb, "--prefix", pfx}, a...) }
	defer runCLI(args("destroy", "../../examples/router.yaml")...)
	t.Cleanup(func() { // whatever a failure left behind
		entries, _ := os.ReadDir("/run/netns")
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), pfx) || e.Name() == sb {
				p := filepath.Join("/run/netns", e.Name())
				syscall.Unmount(p, syscall.MNT_DETACH)
				os.Remove(p)
			}
		}
	})
	code, out, errOut := runCLI(args("apply", "../../examples/router.yaml")...)
	if code != 0 || !strings.Contains(out, "Apply complete. 10 to add, 0 to change") {
		t.Fatalf("apply: code %d\n%s\n%s", code, out, errOut)
	}
	if code, out, _ := runCLI(args("plan", "--detailed-exitcode", "../../examples/router.yaml")...); code != 0 {
		t.Fatalf("plan after apply: code %d\n%s", code, out)
	}
	code, out, _ = runCLI(args("show", "../../examples/router.yaml")...)
	if code != 0 || !strings.Contains(out, "No drift") || !strings.Contains(out, "sysctl   net.ipv4.ip_forward = 1") {
		t.Fatalf("show: code %d\n%s", code, out)
	}
	// Another lab that wants the same names (br0, ns0, ns1) conflicts and
	// changes nothing.
	code, out, _ = runCLI(args("apply", "../../examples/nat.yaml")...)
	if code != 1 || !strings.Contains(out, `conflict: ../../examples/nat.yaml:33:5: bridges[0]: bridge "br0" in namespace "host" already exists and is not owned by this topology`) ||
		strings.Contains(out, "... done") {
		t.Fatalf("a second lab taking the same names must conflict: code %d\n%s", code, out)
	}
	// JSON forms: show, and a no-op apply.
	code, out, _ = runCLI(args("-o", "json", "show", "../../examples/router.yaml")...)
	var shown struct {
		State struct {
			Namespaces map[string]struct {
				Owned bool                       `json:"owned"`
				Links map[string]json.RawMessage `json:"links"`
			} `json:"namespaces"`
		} `json:"state"`
		Drift struct {
			Summary struct{ Add, Change, Destroy int } `json:"summary"`
		} `json:"drift"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &shown) != nil || !shown.State.Namespaces["ns0"].Owned ||
		len(shown.State.Namespaces["host"].Links) != 4 || shown.Drift.Summary.Add != 0 {
		t.Fatalf("show -o json: code %d\n%s", code, out)
	}
	code, out, _ = runCLI(args("-o", "json", "apply", "../../examples/router.yaml")...)
	var applied struct {
		Plan       json.RawMessage `json:"plan"`
		Applied    int             `json:"applied"`
		RolledBack bool            `json:"rolled_back"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &applied) != nil || applied.Applied != 0 || applied.RolledBack || len(applied.Plan) == 0 {
		t.Fatalf("apply -o json (no-op): code %d\n%s", code, out)
	}
	code, out, _ = runCLI(args("-o", "json", "destroy", "../../examples/router.yaml")...)
	var destroyed struct {
		Applied        int   `json:"applied"`
		SandboxRemoved *bool `json:"sandbox_removed"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &destroyed) != nil || destroyed.Applied == 0 || destroyed.SandboxRemoved == nil || !*destroyed.SandboxRemoved {
		t.Fatalf("destroy -o json: code %d\n%s", code, out)
	}
	// In text, after another apply; then again, with nothing there.
	if code, out, _ = runCLI(args("apply", "../../examples/router.yaml")...); code != 0 {
		t.Fatalf("apply: code %d\n%s", code, out)
	}
	code, out, _ = runCLI(args("destroy", "../../examples/router.yaml")...)
	if code != 0 || !strings.Contains(out, "Removed netns "+sb) {
		t.Fatalf("destroy: code %d\n%s", code, out)
	}
	code, out, _ = runCLI(args("-o", "json", "destroy", "../../examples/router.yaml")...)
	destroyed.SandboxRemoved = nil
	if code != 0 || json.Unmarshal([]byte(out), &destroyed) != nil || destroyed.Applied != 0 || destroyed.SandboxRemoved == nil || *destroyed.SandboxRemoved {
		t.Fatalf("destroy -o json with nothing there: code %d\n%s", code, out)
	}
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), pfx) || e.Name() == sb {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

func TestFlagNamesAreChecked(t *testing.T) {
	long := strings.Repeat("x", 65)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--netns", "../y"}, `error: --netns "../y" must not contain ".."` + "\n"},
		{[]string{"--netns", "a/b"}, `error: --netns "a/b" may hold only letters, digits, '_', '.' and '-', and must start with a letter or digit` + "\n"},
		{[]string{"--prefix", "../x-"}, `error: --prefix "../x-" must not contain ".."` + "\n"},
		{[]string{"--prefix", "-x"}, `error: --prefix "-x" may hold only letters, digits, '_', '.' and '-', and must start with a letter or digit` + "\n"},
		{[]string{"--prefix", "a@b"}, `error: --prefix "a@b" may hold only letters, digits, '_', '.' and '-', and must start with a letter or digit` + "\n"},
		{[]string{"--netns", long}, `error: --netns "` + long + `" is longer than 64 characters` + "\n"},
		{[]string{"--max-file-size", "lots"}, `error: --max-file-size: "lots" is not a size (like 64MiB or 1048576)` + "\n"},
	} {
		for _, cmd := range []string{"validate", "plan", "apply", "destroy"} {
			code, out, errOut := runCLI(append(c.args, cmd, "../../examples/bridge.yaml")...)
			if code != 1 || out != "" || errOut != c.want {
				t.Errorf("%v %s: exit %d, stdout %q, stderr %q, want %q", c.args, cmd, code, out, errOut, c.want)
			}
		}
	}
}

func TestInputIsBounded(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "topo.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	info, _ := os.Stat("../../examples/bridge.yaml")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"validate", fifo}, "error: read topology: " + fifo + " is a FIFO, not a regular file\n"},
		{[]string{"validate", "/dev/zero"}, "error: read topology: /dev/zero is a character device, not a regular file\n"},
		{[]string{"validate", "/tmp"}, "error: read topology: /tmp is a directory, not a regular file\n"},
		{[]string{"--max-file-size", "100", "validate", "../../examples/bridge.yaml"},
			fmt.Sprintf("error: read topology: ../../examples/bridge.yaml is %d bytes, over the limit of 100 (--max-file-size)\n", info.Size())},
	} {
		code, out, errOut := runCLI(c.args...)
		if code != 1 || out != "" || errOut != c.want {
			t.Errorf("%v: exit %d, stdout %q, stderr %q, want %q", c.args, code, out, errOut, c.want)
		}
	}
	if code, _, errOut := runCLI("--max-file-size", "1KiB", "validate", "../../examples/none.yaml"); code != 0 {
		t.Errorf("a file under the limit: exit %d %s", code, errOut)
	}
}

// hugeTopology writes a file of n namespaces with a veth each.
func hugeTopology(t testing.TB, n int) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("name: huge\nnamespaces:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  n%d: {}\n", i)
	}
	b.WriteString("links:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  - endpoints: [\"n%d:eth0\", \"host:v%d\"]\n", i, i)
	}
	p := filepath.Join(t.TempDir(), "huge.yaml")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSIGINTDuringParse: a signal while a huge file is parsed ends the
// command within a second, saying what it interrupted.
func TestSIGINTDuringParse(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "netplan-lab")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	file := hugeTopology(t, 300000)
	cmd := exec.Command(bin, "validate", file)
	var errb strings.Builder
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Signal once it has read the file (the handler is set before any
	// command runs): a fixed wait is too short for a loaded machine's
	// start-up and could be past the parse on a fast one.
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		io, _ := os.ReadFile(fmt.Sprintf("/proc/%d/io", cmd.Process.Pid))
		var rchar int64
		for _, l := range strings.Split(string(io), "\n") {
			if v, ok := strings.CutPrefix(l, "rchar: "); ok {
				rchar, _ = strconv.ParseInt(v, 10, 64)
			}
		}
		if rchar >= fi.Size() {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("validate did not read the file in 20 s (read %d of %d bytes)", rchar, fi.Size())
		}
	}
	sent := time.Now()
	cmd.Process.Signal(os.Interrupt)
	err = cmd.Wait()
	took := time.Since(sent)
	want := "error: interrupted while reading " + file + "; nothing was changed\n"
	if err == nil || errb.String() != want {
		t.Fatalf("validate after SIGINT: %v, stderr %q, want %q (was the parse over before the signal?)", err, errb.String(), want)
	}
	if took > time.Second {
		t.Fatalf("SIGINT took %v to act", took)
	}
}

func TestVariables(t *testing.T) {
	file := writeFile(t, "name: ${LAB:-varlab}\nnamespaces:\n  c1: {}\nlinks:\n  - a: {namespace: c1, name: eth0, addresses: [\"${NET}.2/24\"], mtu: \"${MTU}\"}\n    b: {namespace: host, name: v-c1}\n")
	// Undefined: an error at its position, naming the ways to set it.
	code, out, _ := runCLI("validate", file)
	if code != 1 || out != file+":5:48: links[0].a.addresses[0]: variable NET is not set: give it a value (--var NET=VALUE or the environment on the command line; Vars in Go) or a default, ${NET:-VALUE}\n"+
		file+":5:69: links[0].a.mtu: variable MTU is not set: give it a value (--var MTU=VALUE or the environment on the command line; Vars in Go) or a default, ${MTU:-VALUE}\n" {
		t.Fatalf("undefined variables: exit %d\n%s", code, out)
	}
	// --var, then the environment, then the default.
	t.Setenv("MTU", "1400")
	if code, out, errOut := runCLI("--var", "NET=10.9.9", "validate", file); code != 0 {
		t.Fatalf("with --var and the environment: exit %d\n%s%s", code, out, errOut)
	}
	top, err := topology.ParseWith(file, mustRead(t, file), topology.VarsFrom(map[string]string{"NET": "10.9.9", "MTU": "9000", "LAB": "given"}))
	if err != nil {
		t.Fatal(err)
	}
	if top.Name != "given" || top.Links[0].A.MTU != 9000 || top.Links[0].A.Addresses[0] != "10.9.9.2/24" {
		t.Fatalf("--var must win over the environment: %+v", top.Links[0].A)
	}
	top, err = topology.ParseWith(file, mustRead(t, file), topology.VarsFrom(map[string]string{"NET": "10.9.9"}))
	if err != nil || top.Name != "varlab" || top.Links[0].A.MTU != 1400 || top.Vars["LAB"] != "varlab" || top.Vars["MTU"] != "1400" {
		t.Fatalf("environment and default: %v %+v %v", err, top, top.Vars)
	}
	// A value is read for what it holds once substituted; $${ is a
	// literal ${ (and a literal is no integer).
	literal := writeFile(t, "name: q\nbridges: [{name: br0, mtu: \"$${MTU}\"}]\n")
	if code, out, _ := runCLI("validate", literal); code != 1 || !strings.Contains(out, "bridges[0].mtu: expected an integer") {
		t.Fatalf("a literal ${ in an integer: exit %d\n%s", code, out)
	}
	if code, _, _ := runCLI("--var", "broken", "validate", file); code != 1 {
		t.Fatal("--var without = was accepted")
	}
	if code, _, errOut := runCLI("--var", "1NET=x", "validate", file); code != 1 || !strings.Contains(errOut, `"1NET" is not a variable name`) {
		t.Fatalf("--var with a bad name: exit %d\n%s", code, errOut)
	}
	// One given twice with two values is refused (the last one won,
	// silently); twice the same is no problem.
	if code, _, errOut := runCLI("--var", "NET=10.9.9", "--var", "NET=10.9.8", "validate", file); code != 1 || !strings.Contains(errOut, `--var NET given twice, as "10.9.9" and as "10.9.8"`) {
		t.Fatalf("--var twice: exit %d\n%s", code, errOut)
	}
	if code, _, errOut := runCLI("--var", "NET=10.9.9", "--var", "NET=10.9.9", "validate", file); code != 0 {
		t.Fatalf("--var twice, the same value: exit %d\n%s", code, errOut)
	}
	// A --var the file does not use is a warning (a typo, most likely).
	if code, _, errOut := runCLI("--var", "NET=10.9.9", "--var", "NTE=1", "validate", file); code != 0 || errOut != "warning: --var NTE: "+file+" has no ${NTE}\n" {
		t.Fatalf("unused --var: exit %d\n%q", code, errOut)
	}
	// One the file names only in a default that was not taken is not
	// (an outside audit: "has no ${B}" for a file with ${A:-${B:-x}}).
	nested := filepath.Join(t.TempDir(), "nested.yaml")
	if err := os.WriteFile(nested, []byte("name: w\nnamespaces:\n  \"${A:-${B:-x}}\": {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runCLI("--var", "A=a", "--var", "B=b", "validate", nested); code != 0 || errOut != "" {
		t.Fatalf("a --var named in a default not taken: exit %d\n%q", code, errOut)
	}
	// Said beside the file's errors too (an outside audit: lost then).
	broken := filepath.Join(t.TempDir(), "broken.yaml")
	if err := os.WriteFile(broken, []byte("name: w\nbridges: [{name: b, mtu: abc}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runCLI("--var", "B=1", "validate", broken); code != 1 || !strings.Contains(errOut, "warning: --var B: "+broken+" has no ${B}") {
		t.Fatalf("an unused --var beside an error: exit %d\n%q", code, errOut)
	}
}

func mustRead(t *testing.T, f string) []byte {
	t.Helper()
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDestroyWithoutTheFilesVariables: destroy needs only the file's name
// and prefix, so a lab applied with --var comes down without them again
// (its other problems are warnings); a name that cannot be read is still
// an error, and changes nothing.
func TestDestroyWithoutTheFilesVariables(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("live CLI test skipped: needs root to make namespaces")
	}
	sb := sandbox(t)
	pfx := fmt.Sprintf("t%04x-", rand.Intn(0xffff))
	args := func(a ...string) []string { return append([]string{"--netns", sb, "--prefix", pfx}, a...) }
	// Its prefix: has a variable too, which --prefix makes moot.
	file := writeFile(t, "name: ${LAB:-varlab}\nprefix: ${PFX}\nnamespaces:\n  c1: {}\nlinks:\n  - a: {namespace: c1, name: eth0, addresses: [\"${NET}.2/24\"], mtu: \"${MTU}\"}\n    b: {namespace: host, name: v-c1}\n")
	defer runCLI(args("--var", "NET=10.9.9", "--var", "MTU=1400", "--var", "PFX=x-", "destroy", file)...)
	if code, out, errOut := runCLI(args("--var", "NET=10.9.9", "--var", "MTU=1400", "--var", "PFX=x-", "apply", file)...); code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", code, out, errOut)
	}
	// A name with a variable not set: no lab to name, nothing changed.
	named := writeFile(t, "name: ${LABNAME}\nnamespaces:\n  c1: {}\n")
	if code, _, errOut := runCLI(args("destroy", named)...); code != 1 || !strings.Contains(errOut, "name: variable LABNAME is not set") {
		t.Fatalf("destroy by a name not set: exit %d\n%s", code, errOut)
	}
	if _, err := os.Stat("/run/netns/" + pfx + "c1"); err != nil {
		t.Fatalf("the lab is not there any more: %v", err)
	}
	code, out, errOut := runCLI(args("destroy", file)...)
	if code != 0 || !strings.Contains(out, "Destroy complete. 2 destroyed.") {
		t.Fatalf("destroy without the variables: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"warning: " + file + ":6:48: links[0].a.addresses[0]: variable NET is not set",
		"warning: " + file + ` is not a valid topology (2 problems); destroy needs only its name and prefix, and removes what carries the mark of lab "varlab"`} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if strings.Contains(errOut, "PFX") {
		t.Errorf("the file's prefix: was read, with --prefix given:\n%s", errOut)
	}
	if _, err := os.Stat("/run/netns/" + pfx + "c1"); err == nil {
		t.Fatal("c1 is still there")
	}
}

// TestExecSaysWhatIsWrong: exec to a namespace the file has not lists
// those it has; a flag of the command's own before -- says where it goes
// (an outside audit: "unknown shorthand flag: 'b' in -br", no more).
func TestExecSaysWhatIsWrong(t *testing.T) {
	file := "../../examples/bridge.yaml"
	if code, _, errOut := runCLI("--netns", "npl-test-none", "exec", file, "c9", "--", "true"); code != 1 || !strings.Contains(errOut, `namespace "c9" is not in ../../examples/bridge.yaml; its namespaces: host, c1, c2`) {
		t.Errorf("exec to c9: exit %d\n%s", code, errOut)
	}
	if code, _, errOut := runCLI("--netns", "npl-test-none", "exec", file, "c1", "ip", "-br", "addr"); code == 0 || !strings.Contains(errOut, "the command and its flags go after --: exec FILE NS -- CMD [ARGS...]") {
		t.Errorf("exec without --: exit %d\n%s", code, errOut)
	}
}

// TestWrongPrefixSaysWhereTheLabIs: exec and check of a lab applied under
// another prefix say the namespace is not there, and where the lab is
// (an outside audit: "apply the lab first", no more; check ended at its
// first listener, or failed each check).
func TestWrongPrefixSaysWhereTheLabIs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("live CLI test skipped: needs root to make namespaces")
	}
	sb := sandbox(t)
	pfx := fmt.Sprintf("t%04x-", rand.Intn(0xffff))
	file := "../../examples/bridge.yaml"
	if code, out, errOut := runCLI("--netns", sb, "--prefix", pfx, "apply", file); code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", code, out, errOut)
	}
	defer runCLI("--netns", sb, "--prefix", pfx, "destroy", file)
	// path too (an outside audit: it gave no hint).
	for _, cmd := range [][]string{{"exec", file, "c1", "--", "true"}, {"check", file}, {"path", file, "c1", "c2"}} {
		code, out, errOut := runCLI(append([]string{"--netns", sb}, cmd...)...)
		want := fmt.Sprintf("Hint: lab \"bridge\" (sandbox %s, prefix %s) is there (2 namespaces); to use it: netplan-lab --netns %s --prefix %s %s FILE ...", sb, pfx, sb, pfx, cmd[0])
		says := "namespace c1 (netns c1) does not exist: apply the lab first\n"
		if cmd[0] == "path" {
			says = "namespace c1 (netns c1) is not there, or is not this lab's: apply the lab first\n"
		}
		if code != 1 || !strings.Contains(errOut, says+want) {
			t.Errorf("%s without the prefix: exit %d\n%s%s\nwant the hint %q", cmd[0], code, out, errOut, want)
		}
	}
}
