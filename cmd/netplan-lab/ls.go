package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/netplan-lab/netplan-lab/internal/linux"
)

func newLsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List every lab on this machine, read from the kernel's marks",
		Long: `List every lab on this machine, from what the kernel holds (the marks
netplan-lab puts on namespaces, interfaces and NAT tables), not from any
file: name, sandbox, prefix, namespaces, interfaces and NAT. The flags to
reach one are --netns SANDBOX --prefix PREFIX with its file.`,
		Example: `  netplan-lab ls
  netplan-lab ls -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := linux.CheckPrivileges(); err != nil {
				return &codeError{exitError, err}
			}
			labs, err := linux.ListLabs(cmd.Context())
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.json(map[string]any{"labs": labs})
			}
			if len(labs) == 0 {
				fmt.Fprintln(g.stdout, "No labs on this machine.")
				return nil
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
			defer tw.Flush()
			fmt.Fprintln(tw, "NAME\tSANDBOX\tPREFIX\tLINKS\tNAT\tNAMESPACES")
			for _, l := range labs {
				sb := l.Sandbox
				if sb == "" {
					sb = "(this machine)"
				}
				prefix := l.Prefix
				if prefix == "" {
					prefix = `""`
				}
				nat := "-"
				if len(l.NAT) > 0 {
					nat = fmt.Sprint(len(l.NAT))
				}
				ns := strings.Join(l.Namespaces, " ")
				if ns == "" {
					ns = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", l.Name, sb, prefix, l.Links, nat, ns)
			}
			return nil
		},
	}
}
