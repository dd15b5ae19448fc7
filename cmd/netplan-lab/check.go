package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/netplan-lab/netplan-lab/internal/check"
	"github.com/netplan-lab/netplan-lab/reconcile"
)

func newCheckCmd(g *globals) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "check FILE",
		Short: "Run the file's checks: what must (not) reach what, from inside the lab's namespaces",
		Long: `Run the checks: of the file, each from inside its from namespace: icmp
(native, no ping binary needed), or a tcp connection / udp exchange to a
port. Where nothing listens on that port, check listens itself where the
connection of a check that expects reachable may land (the target's
namespace, lands:, a port_forward's namespace and destination); each
listener answers with its namespace's name, so lands: NS can say where a
forwarded connection arrives. A check that expects unreachable gets no
listener: it sees only what really listens.

Exit 0 when every expectation holds, 1 otherwise. --all pings, from every
namespace, every other one's first address (mininet's pingall).`,
		Example: `  netplan-lab --netns lab check examples/bridge.yaml
  netplan-lab --netns lab check --all examples/router.yaml
  netplan-lab --netns lab check -o json examples/published-port.yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := g.load(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			defer l.kernel.Close()
			if err := applied(l); err != nil {
				return err
			}
			if all {
				return g.checkAll(l)
			}
			return g.runChecks(cmd.Context(), l, args[0])
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "ping every namespace's first address from every other namespace, as a matrix")
	return cmd
}

// applied says the lab is not applied (under this sandbox and prefix)
// when none of its namespaces is there: every check would fail on it, or
// the first listener end the run, with less to go on (an outside audit).
func applied(l *lab) error {
	var first error
	for _, n := range l.topo.Namespaces {
		if n.Name == reconcile.HostNS {
			continue
		}
		fd, err := l.kernel.OpenNetns(n.Name)
		if err == nil {
			fd.Close()
			return nil
		}
		if first == nil {
			first = err
		}
	}
	return first
}

func (g *globals) checkEnv(l *lab) *check.Env {
	env := &check.Env{Topo: l.topo, Open: l.kernel.OpenLabNetns}
	if g.netns != "" {
		env.Listen = append(env.Listen, reconcile.HostNS)
	}
	for _, n := range l.topo.Namespaces {
		if n.Name != reconcile.HostNS {
			env.Listen = append(env.Listen, n.Name)
		}
	}
	return env
}

// applyChecksJSON prints apply --check's one JSON document: the apply's
// result with the checks' under "checks".
func (g *globals) applyChecksJSON(ctx context.Context, l *lab, file string, r applyResult) error {
	results, err := check.Run(ctx, g.checkEnv(l))
	if err != nil {
		return err
	}
	r.Checks = results
	if r.Checks == nil {
		r.Checks = []check.Result{}
	}
	if err := g.json(r); err != nil {
		return err
	}
	failed := 0
	for _, c := range results {
		if !c.OK {
			failed++
		}
	}
	if failed > 0 {
		return &codeError{exitError, fmt.Errorf("%s of %s did not hold", plural(failed, "check"), file)}
	}
	return nil
}

// runChecks runs the file's checks and prints one line each; it fails
// (exit 1) when an expectation does not hold.
func (g *globals) runChecks(ctx context.Context, l *lab, file string) error {
	results, err := check.Run(ctx, g.checkEnv(l))
	if err != nil {
		return err
	}
	failed := 0
	for _, r := range results {
		if !r.OK {
			failed++
		}
	}
	if g.output == "json" {
		if results == nil {
			results = []check.Result{}
		}
		if err := g.json(map[string]any{"results": results}); err != nil {
			return err
		}
	} else {
		if len(results) == 0 {
			fmt.Fprintf(g.stdout, "%s has no checks: (see docs/topology.md); check --all pings every namespace\n", file)
		}
		for _, r := range results {
			fmt.Fprintln(g.stdout, checkLine(r))
		}
		if len(results) > 0 {
			verb := "hold"
			if len(results) == 1 {
				verb = "holds"
			}
			fmt.Fprintf(g.stdout, "\n%d of %s %s.\n", len(results)-failed, plural(len(results), "check"), verb)
		}
	}
	if failed > 0 {
		return &codeError{exitError, fmt.Errorf("%s of %s did not hold", plural(failed, "check"), file)}
	}
	return nil
}

func checkLine(r check.Result) string {
	status := "ok  "
	if !r.OK {
		status = "FAIL"
	}
	to := r.To
	if r.Address != "" && r.Address != r.To {
		to += " (" + r.Address + ")"
	}
	what := r.Proto
	if r.Port != 0 {
		what += fmt.Sprintf("/%d", r.Port)
	}
	seen := r.Seen
	if r.Landed != "" {
		seen += ", landed in " + r.Landed
	}
	expect := r.Expect
	if r.Lands != "" {
		expect += ", landing in " + r.Lands
	}
	s := fmt.Sprintf("%s %s -> %s %s: %s (expected %s) in %.2fms", status, r.From, to, what, seen, expect, r.TimeMS)
	if r.Detail != "" && (!r.OK || r.Seen == "unreachable") {
		s += ": " + r.Detail
	}
	return s
}

// checkAll prints the all-pairs ICMP matrix.
func (g *globals) checkAll(l *lab) error {
	var names []string
	if g.netns != "" {
		names = append(names, reconcile.HostNS)
	}
	for _, n := range l.topo.Namespaces {
		if n.Name != reconcile.HostNS {
			names = append(names, n.Name)
		}
	}
	m := check.Matrix(g.checkEnv(l), names)
	failed := 0
	type pair struct {
		From string `json:"from"`
		To   string `json:"to"`
		OK   bool   `json:"ok"`
	}
	var pairs []pair
	for i := range names {
		for j := range names {
			if v := m[i][j]; v != nil {
				pairs = append(pairs, pair{names[i], names[j], *v})
				if !*v {
					failed++
				}
			}
		}
	}
	if g.output == "json" {
		if err := g.json(map[string]any{"namespaces": names, "pairs": pairs}); err != nil {
			return err
		}
	} else {
		w := 4
		for _, n := range names {
			w = max(w, len(n)+1)
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%-*s", w, "from\\to")
		for _, n := range names {
			fmt.Fprintf(&b, " %-*s", w, n)
		}
		b.WriteString("\n")
		for i, from := range names {
			fmt.Fprintf(&b, "%-*s", w, from)
			for j := range names {
				cell := "-"
				if v := m[i][j]; v != nil {
					cell = "ok"
					if !*v {
						cell = "X"
					}
				} else if i != j {
					cell = "n/a" // it has no address to ping
				}
				fmt.Fprintf(&b, " %-*s", w, cell)
			}
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "\n%d of %s reached (each namespace's first address; n/a: it has none).\n", len(pairs)-failed, plural(len(pairs), "pair"))
		fmt.Fprint(g.stdout, b.String())
	}
	if failed > 0 {
		return &codeError{exitError, fmt.Errorf("%s did not reach", plural(failed, "pair"))}
	}
	return nil
}
