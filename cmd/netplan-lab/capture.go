package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/netplan-lab/netplan-lab/internal/capture"
	"github.com/netplan-lab/netplan-lab/reconcile"
)

func newCaptureCmd(g *globals) *cobra.Command {
	var (
		out      string
		count    int
		duration time.Duration
		filter   string
	)
	cmd := &cobra.Command{
		Use:   "capture FILE NS:IF",
		Short: "Capture packets on a lab interface, from inside its namespace (no tcpdump needed)",
		Long: `Capture packets on a lab interface, from inside its namespace: what it
receives and what it sends. NS is the namespace's short name from the file
(host: the --netns sandbox, or this machine's namespace without it).

Without -w, one line per packet says what it is (ARP who-has/is-at, ICMP
echo, TCP flags, ...). With -w FILE it writes pcap, which Wireshark and
tcpdump read; -w - streams pcap to stdout. It stops after -c packets, after
--duration, or on Ctrl-C, and the file is complete in every case.

--filter is a small language of its own, not tcpdump's: the words arp, ip,
ip6, icmp, icmp6, tcp, udp, "port N" and "host ADDR", each optionally after
not, joined with and and or; and binds tighter than or, and there are no
parentheses ("icmp or arp and host 10.0.0.1" is icmp, or arp about
10.0.0.1).

On a bridge, capture sees what the bridge itself sends and receives
(broadcasts, its own traffic), not the unicast it switches between its
ports: capture on a port (the veth end) for that.`,
		Example: `  netplan-lab capture examples/bridge.yaml c1:eth0 -c 6
  netplan-lab capture examples/bridge.yaml host:hwchiu0 -w arp.pcap --filter arp
  netplan-lab capture examples/bridge.yaml c1:eth0 -w - | wireshark -k -i -`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ns, ifname, ok := strings.Cut(args[1], ":")
			if !ok || ns == "" || ifname == "" {
				return &codeError{exitError, fmt.Errorf("%q is not NS:IF (a namespace of the file and an interface in it, like c1:eth0)", args[1])}
			}
			keep, err := capture.ParseFilter(filter)
			if err != nil {
				return &codeError{exitError, err}
			}
			if count < 0 {
				return &codeError{exitError, errors.New("-c must be at least 0 (0: no limit)")}
			}
			l, err := g.load(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			defer l.kernel.Close()
			if ns != reconcile.HostNS && l.topo.Namespace(ns) == nil {
				return &codeError{exitError, notInFile(ns, args[0], l.topo)}
			}
			fd, err := l.kernel.OpenLabNetns(ns)
			if err != nil {
				return err
			}
			defer fd.Close()
			src, err := capture.Open(fd, ifname)
			if err != nil {
				return fmt.Errorf("capture on %s in netns %s: %w", ifname, l.kernel.KernelName(ns), err)
			}
			defer src.Close()
			var w *capture.Writer
			switch out {
			case "":
			case "-":
				if w, err = capture.NewWriter(g.stdout); err != nil {
					return err
				}
				w.Stream = true
			default:
				f, err := os.Create(out)
				if err != nil {
					return err
				}
				defer f.Close()
				if w, err = capture.NewWriter(f); err != nil {
					return err
				}
			}
			ctx := cmd.Context()
			if duration > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, duration)
				defer cancel()
			}
			info := g.stderr
			if out == "" {
				info = g.stdout
			}
			n, err := runCapture(ctx, src, keep, w, g.stdout, count)
			if w != nil {
				if ferr := w.Flush(); ferr != nil && err == nil {
					err = ferr
				}
			}
			fmt.Fprintf(info, "%s captured on %s:%s (netns %s)\n", plural(n, "packet"), ns, ifname, l.kernel.KernelName(ns))
			// As tcpdump says it: packets lost because the capture did
			// not keep up (an outside audit: they went unsaid).
			if d, derr := src.Dropped(); derr == nil && d > 0 {
				fmt.Fprintf(info, "%s dropped by the kernel: the capture did not keep up (-w to a file keeps up best; --filter does not help, it applies after)\n", plural(d, "packet"))
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVarP(&out, "write", "w", "", "write pcap to this file (- for stdout) instead of one line per packet")
	f.IntVarP(&count, "count", "c", 0, "stop after this many packets (0: no limit)")
	f.DurationVar(&duration, "duration", 0, "stop after this long (0: no limit)")
	f.StringVar(&filter, "filter", "", "keep only matching packets: "+capture.FilterWords)
	return cmd
}

// runCapture reads packets until ctx ends or count (if not 0) are kept,
// writing them to w, or a summary line each to lines when w is nil.
func runCapture(ctx context.Context, src *capture.Source, keep capture.Filter, w *capture.Writer, lines io.Writer, count int) (int, error) {
	buf := make([]byte, capture.Snaplen)
	n := 0
	for count == 0 || n < count {
		if ctx.Err() != nil {
			return n, nil // Ctrl-C or --duration: a clean end
		}
		// ts: when it passed (the ring's time), not when it was read.
		got, length, outgoing, ts, err := src.Read(buf)
		if errors.Is(err, capture.ErrTimeout) {
			continue
		}
		if err != nil {
			return n, err
		}
		p := capture.Decode(buf[:got])
		p.Len = length
		if !keep(p) {
			continue
		}
		n++
		if w != nil {
			if err := w.Write(ts, buf[:got], length); err != nil {
				return n, err
			}
			continue
		}
		dir := "In "
		if outgoing {
			dir = "Out"
		}
		if _, err := fmt.Fprintf(lines, "%s %s %s %s\n", ts.Format("15:04:05.000000"), src.Ifname, dir, p); err != nil {
			return n, err
		}
	}
	return n, nil
}
