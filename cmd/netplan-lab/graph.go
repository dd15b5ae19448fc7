package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/netplan-lab/netplan-lab/internal/graph"
	"github.com/netplan-lab/netplan-lab/topology"
)

func newGraphCmd(g *globals) *cobra.Command {
	var format, out string
	cmd := &cobra.Command{
		Use:   "graph FILE",
		Short: "Draw the topology: dot, mermaid, or SVG (laid out here, no graphviz needed)",
		Long: `Draw the topology of FILE: namespaces as boxes holding their interfaces and
addresses, veth pairs, bridge ports, macvlan/ipvlan parents (dashed), VXLAN
tunnels (dotted, with their VNI), NAT marked at its namespace. It reads
only the file: no root needed.`,
		Example: `  netplan-lab graph examples/bridge.yaml -f svg --to bridge.svg
  netplan-lab graph examples/overlay.yaml -f dot | dot -Tpng > overlay.png
  netplan-lab graph examples/nat.yaml -f mermaid`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			top, err := interruptible(cmd.Context(), "reading "+args[0], func() (*topology.Topology, error) { return loadTopology(args[0], g.varsOf(), g.readOptions()...) })
			if err != nil {
				return &codeError{exitError, err}
			}
			m := graph.Build(top)
			var text string
			switch format {
			case "dot":
				text = m.Dot()
			case "mermaid":
				text = m.Mermaid()
			case "svg":
				text = m.SVG()
			default:
				return &codeError{exitError, fmt.Errorf("-f must be dot, mermaid or svg, not %q", format)}
			}
			var w io.Writer = g.stdout
			if out != "" && out != "-" {
				f, err := os.Create(out)
				if err != nil {
					return err
				}
				defer f.Close()
				w = f
			}
			_, err = io.WriteString(w, text)
			return err
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "svg", "dot, mermaid or svg")
	cmd.Flags().StringVar(&out, "to", "", "write to this file instead of stdout")
	return cmd
}
