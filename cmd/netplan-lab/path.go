package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/netplan-lab/netplan-lab/internal/linux"
	"github.com/netplan-lab/netplan-lab/internal/path"
	"github.com/netplan-lab/netplan-lab/reconcile"
)

func newPathCmd(g *globals) *cobra.Command {
	var proto string
	var port int
	cmd := &cobra.Command{
		Use:   "path FILE FROM TO",
		Short: "Explain how a packet from namespace FROM to TO travels, hop by hop, and where and why it stops",
		Long: `Explain how a packet from namespace FROM to TO (a namespace of the file,
NS:IF, or an address) travels: in each namespace the kernel's own route
lookup (as ip route get), the interfaces in and out, the NAT rules of the
lab that rewrite it, and the way over veth pairs, bridges, macvlan/ipvlan
parents and VXLAN tunnels to the next namespace. It says where and why the
packet stops: delivered, no route, ip_forward off, rp_filter, a link that
is down, a VXLAN whose remote is not where its far end is. A forward chain
of someone else's with policy drop is a note: path does not evaluate its
rules. It sends nothing; it exits 1 when the packet does not arrive.`,
		Example: `  netplan-lab --netns lab path examples/router.yaml ns0 ns1
  netplan-lab --netns lab path --proto tcp --port 8080 examples/published-port.yaml internet host:uplink
  netplan-lab --netns lab -o json path examples/nat.yaml ns0 203.0.113.2`,
		Args: cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case proto != "icmp" && proto != "tcp" && proto != "udp":
				return &codeError{exitError, fmt.Errorf("--proto must be icmp, tcp or udp, not %q", proto)}
			case proto == "icmp" && port != 0:
				return &codeError{exitError, fmt.Errorf("--port is for --proto tcp or udp")}
			case proto != "icmp" && (port < 1 || port > 65535):
				return &codeError{exitError, fmt.Errorf("--proto %s needs --port 1-65535", proto)}
			}
			l, err := g.load(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			defer l.kernel.Close()
			from := args[1]
			if from != reconcile.HostNS && l.topo.Namespace(from) == nil {
				return &codeError{exitError, notInFile(from, args[0], l.topo)}
			}
			dst, _, err := l.topo.CheckTarget(args[2])
			if err != nil {
				return &codeError{exitError, fmt.Errorf("%s: %w", args[2], err)}
			}
			// Every namespace's nftables, not only those with the lab's
			// NAT: a firewall of someone else's in a plain router decides
			// too (an outside audit: path said delivered past a forward
			// chain that dropped everything).
			q := reconcile.QueryFor(l.desired)
			for _, ns := range q.Namespaces {
				if q.NAT == nil {
					q.NAT = map[string]bool{}
				}
				q.NAT[ns] = true
			}
			obs, err := l.kernel.Observe(cmd.Context(), q)
			if err != nil {
				return err
			}
			if n := obs.NS(from); n == nil || (from != reconcile.HostNS && !n.Owned) {
				return &codeError{exitError, &linux.NoNetnsError{Short: from, Name: l.kernel.KernelName(from), OrForeign: true}}
			}
			r := path.Trace(l.kernel, obs, from, dst, proto, port)
			if g.output == "json" {
				if err := g.json(r); err != nil {
					return err
				}
			} else {
				fmt.Fprint(g.stdout, r.Text())
			}
			if !r.OK() {
				return &codeError{exitError, nil}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&proto, "proto", "icmp", "icmp, tcp or udp (tcp and udp go through port forwards)")
	cmd.Flags().IntVar(&port, "port", 0, "destination port for tcp and udp")
	return cmd
}
