// Command floor builds and removes the benchmark lab the shortest way a
// program can: netlink messages through the netlink library, eight
// workers as netplan-lab's apply has, and nothing else (no reading of what
// is there, no diff, no marks, no sysctls, no hosts files, no checking
// afterwards). It is the floor the benchmark measures netplan-lab against:
// what a tool that knows the lab does not exist yet cannot beat.
//
// The lab is the one netplan-lab makes of the benchmark's file, so IPv6 is
// off in each namespace (the file gives them none: netplan-lab's default),
// set before the veth's end comes into it; the sandbox keeps it, as
// netplan-lab leaves it. (The ip script leaves IPv6 on everywhere, as a
// person typing it would.)
//
//	floor up N SANDBOX PREFIX     # SANDBOX: bridges; PREFIXn0..: namespaces
//	floor down N SANDBOX PREFIX
//
// The lab is the benchmark's (bench_test.go, labYAML and ipScript): N
// namespaces, each with a veth (eth0) to a bridge in SANDBOX, an address
// and a default route to the bridge's address; a bridge per 1000.
package main

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

const perBridge = 1000

func addr(i int) string {
	j := i%perBridge + 2
	return fmt.Sprintf("10.%d.%d.%d/16", i/perBridge, j>>8, j&255)
}

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: floor up|down N SANDBOX PREFIX")
		os.Exit(2)
	}
	n, err := strconv.Atoi(os.Args[2])
	if err != nil || n < 1 {
		fmt.Fprintln(os.Stderr, "floor: N must be a positive number")
		os.Exit(2)
	}
	sandbox, prefix := os.Args[3], os.Args[4]
	switch os.Args[1] {
	case "up":
		err = up(n, sandbox, prefix)
	case "down":
		err = down(n, sandbox, prefix)
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

// each runs f for 0..n-1 on eight workers, each on an OS thread of its
// own (making a namespace moves the thread into it), and returns the
// first error.
func each(n int, f func(i int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  int
	)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread() // never unlocked: the thread goes with the goroutine
			for {
				mu.Lock()
				i := next
				next++
				stop := first != nil
				mu.Unlock()
				if i >= n || stop {
					return
				}
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// makeNamespace makes and pins namespace name on this thread (which it
// moves into it), with IPv6 off if ipv6Off, and lo up through the handle
// it returns; close both.
func makeNamespace(name string, ipv6Off bool) (netns.NsHandle, *netlink.Handle, error) {
	ns, err := netns.NewNamed(name)
	if err != nil {
		return ns, nil, fmt.Errorf("namespace %s: %w", name, err)
	}
	// This thread is in the new namespace: /proc/sys/net is its.
	if ipv6Off {
		for _, which := range []string{"all", "default"} {
			if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+which+"/disable_ipv6", []byte("1"), 0); err != nil {
				ns.Close()
				return ns, nil, fmt.Errorf("namespace %s: IPv6 off: %w", name, err)
			}
		}
	}
	h, err := netlink.NewHandleAt(ns)
	if err == nil {
		err = h.LinkSetUp(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "lo", Index: 1}})
	}
	if err != nil {
		if h != nil {
			h.Close()
		}
		ns.Close()
		return ns, nil, fmt.Errorf("namespace %s: %w", name, err)
	}
	return ns, h, nil
}

func up(n int, sandbox, prefix string) error {
	bridges := (n-1)/perBridge + 1
	brIndex := make([]int, bridges)
	if err := each(1, func(int) error {
		sb, h, err := makeNamespace(sandbox, false) // the sandbox keeps IPv6, as netplan-lab leaves it
		if err != nil {
			return err
		}
		defer sb.Close()
		defer h.Close()
		for k := range brIndex {
			br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("br%d", k), Flags: net.FlagUp}}
			if err := h.LinkAdd(br); err != nil {
				return fmt.Errorf("bridge %s: %w", br.Name, err)
			}
			a, _ := netlink.ParseAddr(fmt.Sprintf("10.%d.0.1/16", k))
			if err := h.AddrAdd(br, a); err != nil {
				return err
			}
			brIndex[k] = br.Index
		}
		return nil
	}); err != nil {
		return err
	}
	sb, err := netns.GetFromName(sandbox)
	if err != nil {
		return err
	}
	defer sb.Close()
	handles := map[int]*netlink.Handle{} // the sandbox's, one per worker thread
	var mu sync.Mutex
	return each(n, func(i int) error {
		tid := unix.Gettid()
		mu.Lock()
		sh := handles[tid]
		mu.Unlock()
		if sh == nil {
			var err error
			if sh, err = netlink.NewHandleAt(sb); err != nil {
				return err
			}
			mu.Lock()
			handles[tid] = sh
			mu.Unlock()
		}
		ns, h, err := makeNamespace(fmt.Sprintf("%sn%d", prefix, i), true)
		if err != nil {
			return err
		}
		defer ns.Close()
		defer h.Close()
		// One queue each way said at creation, as netplan-lab does (the
		// kernel's default waits for two RCU grace periods per veth).
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("v%d", i), MasterIndex: brIndex[i/perBridge], Flags: net.FlagUp,
			NumTxQueues: 1, NumRxQueues: 1}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(ns))}
		if err := sh.LinkAdd(v); err != nil {
			return fmt.Errorf("veth %s: %w", v.Name, err)
		}
		eth0, err := h.LinkByName("eth0")
		if err != nil {
			return err
		}
		if err := h.LinkSetUp(eth0); err != nil {
			return err
		}
		a, _ := netlink.ParseAddr(addr(i))
		if err := h.AddrAdd(eth0, a); err != nil {
			return err
		}
		gw := net.ParseIP(fmt.Sprintf("10.%d.0.1", i/perBridge))
		return h.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: gw})
	})
}

func down(n int, sandbox, prefix string) error {
	if err := each(n, func(i int) error {
		return netns.DeleteNamed(fmt.Sprintf("%sn%d", prefix, i))
	}); err != nil {
		return err
	}
	// The veths went with their namespaces; the bridges go with the
	// sandbox.
	return netns.DeleteNamed(sandbox)
}
