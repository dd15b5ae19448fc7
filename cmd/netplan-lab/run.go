package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/netplan-lab/netplan-lab/internal/check"
	"github.com/netplan-lab/netplan-lab/internal/linux"
	"github.com/netplan-lab/netplan-lab/internal/watch"
	netplanlab "github.com/netplan-lab/netplan-lab/lab"
	"github.com/netplan-lab/netplan-lab/reconcile"
	"github.com/netplan-lab/netplan-lab/topology"
)

// Exit codes, as terraform's -detailed-exitcode.
const (
	exitOK      = 0
	exitError   = 1
	exitPending = 2
)

type globals struct {
	// loaded is the lab the command loaded (for hints after an error).
	loaded      *lab
	netns       string
	prefix      string
	output      string
	verbose     bool
	lockTimeout time.Duration
	maxFileSize string
	vars        []string // --var NAME=VALUE
	stdout      io.Writer
	stderr      io.Writer
	args        []string
	// holdJSON, if set, takes apply's JSON result instead of printing it
	// (apply --check prints one document with the checks in it).
	holdJSON *applyResult
}

// exitError carries an exit code through cobra.
type codeError struct {
	code int
	err  error
}

func (e *codeError) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}

func (e *codeError) Unwrap() error { return e.err }

func run(args []string, stdout, stderr io.Writer) int {
	out := &countingWriter{w: stdout}
	stdout = out
	g := &globals{stdout: stdout, stderr: stderr, args: args}
	root := &cobra.Command{
		Use:           "netplan-lab",
		Short:         "Build Linux network labs (namespaces, bridges, veths, routes) from a YAML topology",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version(),
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&g.netns, "netns", "", "namespace that plays \"host\" (/run/netns/NAME; apply creates it if missing, no other command does)")
	pf.StringVar(&g.prefix, "prefix", "", "prefix for every namespace the topology creates (overrides the file's prefix)")
	pf.StringVarP(&g.output, "output", "o", "text", "output format: text or json")
	pf.BoolVarP(&g.verbose, "verbose", "v", false, "log what is done on stderr")
	pf.DurationVar(&g.lockTimeout, "lock-timeout", 30*time.Second, "how long apply and destroy wait for another run on the same sandbox to finish")
	pf.StringVar(&g.maxFileSize, "max-file-size", "64MiB", "largest topology file read (bytes, or with KiB, MiB, GiB)")
	pf.StringArrayVar(&g.vars, "var", nil, "NAME=VALUE for ${NAME} in the file (repeatable, one value a name; then the environment, then ${NAME:-default})")
	root.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		if g.output != "text" && g.output != "json" {
			return &codeError{exitError, fmt.Errorf("--output must be text or json, not %q", g.output)}
		}
		if msg := topology.CheckPartName("--netns", g.netns, topology.MaxNetnsLen); msg != "" {
			return &codeError{exitError, errors.New(msg)}
		}
		if msg := topology.CheckPartName("--prefix", g.prefix, topology.MaxPrefixLen); msg != "" {
			return &codeError{exitError, errors.New(msg)}
		}
		n, err := parseSize(g.maxFileSize)
		if err != nil {
			return &codeError{exitError, fmt.Errorf("--max-file-size: %w", err)}
		}
		topology.MaxFileSize = n
		given := map[string]string{}
		for _, v := range g.vars {
			name, value, ok := strings.Cut(v, "=")
			if first, twice := given[name]; twice && first != value {
				// Which one the user meant is not for the tool to guess.
				return &codeError{exitError, fmt.Errorf("--var %s given twice, as %q and as %q", name, first, value)}
			}
			given[name] = value
			if !ok || name == "" {
				return &codeError{exitError, fmt.Errorf("--var %q: want NAME=VALUE", v)}
			}
			if !topology.IsVarName(name) {
				return &codeError{exitError, fmt.Errorf("--var %q: %q is not a variable name (letters, digits and _, not starting with a digit)", v, name)}
			}
		}
		return nil
	}
	root.AddCommand(newValidateCmd(g), newPlanCmd(g), newApplyCmd(g), newDestroyCmd(g), newShowCmd(g), newCaptureCmd(g), newCheckCmd(g), newExecCmd(g), newShellCmd(g), newLsCmd(g), newPathCmd(g), newGraphCmd(g))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ran, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	code, msg := exitError, err.Error()
	var ce *codeError
	if errors.As(err, &ce) {
		code, msg = ce.code, ""
		if ce.err != nil {
			msg = ce.err.Error()
		}
	}
	if msg != "" {
		fmt.Fprintf(stderr, "error: %v\n", msg)
		if g.output == "json" && out.n == 0 {
			// A script reading stdout gets a document, not nothing (an
			// outside audit: a refusal was text on stderr only), on one
			// line: apply --watch's events are one a line (another: a
			// watch that could not start gave one over many lines).
			if b, err := json.Marshal(map[string]any{"schema_version": 1, "error": msg, "exit_code": code}); err == nil {
				fmt.Fprintln(stdout, string(b))
			}
		}
	}
	g.hintElsewhere(ctx, ran, err)
	return code
}

// countingWriter counts what is written through it: whether a command
// printed anything on stdout.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// hintElsewhere follows an error about a namespace of the lab that is not
// there with where a lab of its name is, if anywhere: a wrong or missing
// --netns or --prefix said "apply the lab first", no more (an outside
// audit).
func (g *globals) hintElsewhere(ctx context.Context, ran *cobra.Command, err error) {
	var nn *linux.NoNetnsError
	if g.loaded == nil || ran == nil || !errors.As(err, &nn) {
		return
	}
	for _, h := range elsewhere(context.WithoutCancel(ctx), g.loaded, "use it", ran.Name()+" FILE ...") {
		fmt.Fprintln(g.stderr, h)
	}
}

// version is the module's version, or the commit it was built from.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " (commit " + s.Value[:12] + ")"
		}
	}
	return v + ", " + bi.GoVersion
}

func (g *globals) logf(format string, args ...any) {
	if g.verbose {
		fmt.Fprintf(g.stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
	}
}

func (g *globals) json(v any) error {
	enc := json.NewEncoder(g.stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // "a -> b", not "a -\u003e b"
	return enc.Encode(v)
}

// lab is a loaded topology (the public package lab, which the command
// line is built on) with the kernel view that goes with it.
type lab struct {
	*netplanlab.Lab
	topo    *topology.Topology
	desired *reconcile.State
	kernel  *linux.Kernel
}

// load reads the file and prepares the lab; for a command that touches
// the kernel, it first checks this process may. It gives up at once when
// ctx ends (SIGINT during the parse of a huge file).
func (g *globals) load(ctx context.Context, file string) (*lab, error) {
	if err := linux.CheckPrivileges(); err != nil {
		return nil, &codeError{exitError, err}
	}
	l, err := interruptible(ctx, "reading "+file, func() (*lab, error) { return g.loadFile(file) })
	if err == nil {
		g.loaded = l
	}
	return l, err
}

// interruptible runs f, but returns as soon as ctx ends (SIGINT, SIGTERM)
// with an error saying what was interrupted: parsing and planning a huge
// file cannot be cancelled from inside, and they change nothing, so the
// process may exit while they run.
func interruptible[T any](ctx context.Context, what string, f func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := f()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, &codeError{exitError, fmt.Errorf("interrupted while %s; nothing was changed", what)}
	}
}

// waiting says on stderr whom a run waits for.
func (g *globals) waiting(holder string) {
	fmt.Fprintf(g.stderr, "waiting for %s to finish with %s (up to %v)\n", holder, g.sandboxName(), g.lockTimeout)
}

// lock takes the sandbox's and the prefix's locks for a watch's applies.
func (g *globals) lock(ctx context.Context, prefix string) (func(), error) {
	who := "netplan-lab " + strings.Join(g.args, " ")
	unlock, err := linux.LockLab(ctx, g.netns, prefix, g.lockTimeout, who, g.waiting)
	if err != nil {
		return nil, &codeError{exitError, err}
	}
	return unlock, nil
}

func (g *globals) sandboxName() string {
	if g.netns == "" {
		return "this machine's namespace"
	}
	return "sandbox " + g.netns
}

// parseSize reads "1048576", "64MiB", "512KiB", "1GiB".
func parseSize(s string) (int64, error) {
	mult := int64(1)
	num := s
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if strings.HasSuffix(s, u.suffix) {
			num, mult = strings.TrimSuffix(s, u.suffix), u.m
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a size (like 64MiB or 1048576)", s)
	}
	return n * mult, nil
}

// varsOf is the variables' lookup: --var, then the environment.
func (g *globals) varsOf() topology.Vars { return topology.VarsFrom(g.givenVars()) }

// readOptions is how files are read: with --prefix, the file's prefix:
// is not read.
func (g *globals) readOptions() []topology.Option {
	if g.prefix != "" {
		return []topology.Option{topology.PrefixGiven}
	}
	return nil
}

// givenVars are the --var values by name.
func (g *globals) givenVars() map[string]string {
	given := map[string]string{}
	for _, v := range g.vars {
		name, value, _ := strings.Cut(v, "=")
		given[name] = value
	}
	return given
}

// warnUnusedVars: a --var the file never names is likely a typo.
func (g *globals) warnUnusedVars(file string, named map[string]bool) {
	for _, v := range g.vars {
		name, _, _ := strings.Cut(v, "=")
		if !named[name] {
			fmt.Fprintf(g.stderr, "warning: --var %s: %s has no ${%s}\n", name, file, name)
		}
	}
}

func (g *globals) loadFile(file string) (*lab, error) {
	start := time.Now()
	defer func() { g.logf("stage load %s: %v", file, time.Since(start).Round(time.Microsecond)) }()
	l, err := netplanlab.Load(file, g.labOptions())
	if err != nil {
		var list topology.ErrorList
		if errors.As(err, &list) {
			return nil, g.invalid(file, list)
		}
		return nil, err
	}
	g.warnUnusedVars(file, l.Topology.Named)
	return &lab{Lab: l, topo: l.Topology, desired: l.Desired(), kernel: l.Linux()}, nil
}

// invalid prints the problems of file and says it is not a valid topology.
func (g *globals) invalid(file string, list topology.ErrorList) error {
	for _, e := range list {
		fmt.Fprintln(g.stderr, e)
	}
	return &codeError{exitError, fmt.Errorf("%s is not a valid topology (%s)", file, plural(len(list), "problem"))}
}

// loadForDestroy is load for destroy: a file with problems (a variable
// not given again, an edit half done) still names its lab by its name
// and prefix, which is all destroy needs; the problems are warnings.
func (g *globals) loadForDestroy(ctx context.Context, file string) (*lab, error) {
	if err := linux.CheckPrivileges(); err != nil {
		return nil, &codeError{exitError, err}
	}
	return interruptible(ctx, "reading "+file, func() (*lab, error) {
		l, err := netplanlab.Load(file, g.labOptions())
		var list topology.ErrorList
		if errors.As(err, &list) {
			id, idErr := netplanlab.LoadIdentity(file, g.labOptions())
			if idErr != nil {
				return nil, g.invalid(file, list)
			}
			const most = 5
			for i, e := range list {
				if i == most {
					fmt.Fprintf(g.stderr, "warning: ... and %s more\n", plural(len(list)-most, "problem"))
					break
				}
				fmt.Fprintf(g.stderr, "warning: %s\n", e)
			}
			fmt.Fprintf(g.stderr, "warning: %s is not a valid topology (%s); destroy needs only its name and prefix, and removes what carries the mark of lab %q\n", file, plural(len(list), "problem"), id.Topology.Name)
			l, err = id, nil
		}
		if err != nil {
			return nil, err
		}
		return &lab{Lab: l, topo: l.Topology, desired: l.Desired(), kernel: l.Linux()}, nil
	})
}

// labOptions are the lab's options from the command line.
func (g *globals) labOptions() netplanlab.Options {
	return netplanlab.Options{Netns: g.netns, Prefix: g.prefix, Vars: g.givenVars(),
		LockTimeout: g.lockTimeout, LockWho: "netplan-lab " + strings.Join(g.args, " "), LockWaiting: g.waiting,
		OnChange: g.changePrinter(""),
		OnStage: func(stage string, n int, took time.Duration) {
			if n == 0 {
				g.logf("stage %s: %v", stage, took.Round(time.Microsecond))
			} else {
				g.logf("stage %s: %s in %v", stage, plural(n, "change"), took.Round(time.Microsecond))
			}
		}}
}

func newValidateCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "validate FILE",
		Example: "  netplan-lab validate examples/bridge.yaml\n  netplan-lab validate --var MTU=1400 lab.yaml",
		Short:   "Check a topology file and report every problem; touches nothing",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			top, err := interruptible(cmd.Context(), "reading "+args[0], func() (*topology.Topology, error) { return loadTopology(args[0], g.varsOf(), g.readOptions()...) })
			if top != nil {
				g.warnUnusedVars(args[0], top.Named)
			}
			var list topology.ErrorList
			if err != nil && !errors.As(err, &list) {
				return err
			}
			warnings := topology.ErrorList{}
			if top != nil && top.Warnings != nil {
				warnings = top.Warnings
			}
			if g.output == "json" {
				if list == nil {
					list = topology.ErrorList{}
				}
				if err := g.json(map[string]any{"file": args[0], "valid": len(list) == 0, "errors": list, "warnings": warnings}); err != nil {
					return err
				}
			} else {
				for _, e := range list {
					fmt.Fprintln(g.stdout, e)
				}
				for _, w := range warnings {
					fmt.Fprintln(g.stdout, "warning: "+w.Error())
				}
				if len(list) == 0 {
					fmt.Fprintf(g.stdout, "%s: valid\n", args[0])
				}
			}
			if len(list) > 0 {
				return &codeError{exitError, fmt.Errorf("%s: %s", args[0], plural(len(list), "problem"))}
			}
			return nil
		},
	}
}

func (g *globals) printPlan(p *reconcile.Plan) error {
	if g.output == "json" {
		return g.json(p)
	}
	return p.WriteText(g.stdout)
}

func newPlanCmd(g *globals) *cobra.Command {
	var detailed bool
	cmd := &cobra.Command{
		Use:     "plan FILE",
		Example: "  netplan-lab --netns lab plan examples/bridge.yaml\n  netplan-lab --netns lab plan --detailed-exitcode examples/bridge.yaml   # 2: changes pending\n  netplan-lab --netns lab -o json plan examples/bridge.yaml",
		Short:   "Show what apply would change; touches nothing",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := g.load(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			defer l.kernel.Close()
			p, err := interruptible(cmd.Context(), "planning", func() (*reconcile.Plan, error) { return l.Plan(cmd.Context()) })
			var list topology.ErrorList
			if errors.As(err, &list) && g.output == "json" {
				// The kernel refuses something of the file (a sysctl):
				// JSON like validate's.
				if jerr := g.json(map[string]any{"file": args[0], "errors": list}); jerr != nil {
					return jerr
				}
				return &codeError{exitError, err}
			}
			if err != nil {
				return err
			}
			if err := g.printPlan(p); err != nil {
				return err
			}
			if len(p.Conflicts) > 0 {
				return &codeError{exitError, fmt.Errorf("%s: apply would change nothing", plural(len(p.Conflicts), "conflict"))}
			}
			if p.Unsupported != "" {
				return &codeError{exitError, errors.New("the plan cannot be carried out here (unsupported, above): apply would change nothing")}
			}
			if detailed && !p.Empty() {
				return &codeError{exitPending, nil}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&detailed, "detailed-exitcode", false, "exit 0 when there is nothing to do, 2 when changes are pending, 1 on error")
	return cmd
}

// changePrinter prints each change as it is carried out.
func (g *globals) changePrinter(prefix string) func(c *reconcile.Change, err error) {
	return func(c *reconcile.Change, err error) {
		if g.output == "json" {
			return
		}
		status := "done"
		if err != nil {
			status = "FAILED"
		}
		fmt.Fprintf(g.stdout, "%s%s: %-3s %s ... %s\n", prefix, c.Namespace, c.Action, c.Describe(), status)
	}
}

type applyResult struct {
	Plan       *reconcile.Plan `json:"plan"`
	Applied    int             `json:"applied"`
	RolledBack bool            `json:"rolled_back"`
	// SandboxRemoved: destroy only; whether the --netns sandbox went too.
	SandboxRemoved *bool  `json:"sandbox_removed,omitempty"`
	Error          string `json:"error,omitempty"`
	// Checks: apply --check; the file's checks, run after the apply.
	Checks []check.Result `json:"checks,omitempty"`
	// NotReady: links up with carrier but not running, or IPv6 addresses
	// without their local route, when apply returned (after waiting).
	NotReady int `json:"not_ready,omitempty"`
}

// report prints what an apply or destroy did (run does it, printing each
// change as it goes).
func (g *globals) report(verb string, run func() (*reconcile.Result, error), sandboxRemoved *bool) (*reconcile.Result, error) {
	start := time.Now()
	res, err := run()
	if res != nil && g.output == "text" {
		if res.Applied == 0 && err == nil && verb == "apply" {
			fmt.Fprintln(g.stdout, "No changes. The kernel matches the topology.")
		}
		if res.RolledBack {
			if res.RollbackErr != nil {
				fmt.Fprintf(g.stdout, "Rollback FAILED: %v\nThe kernel may hold part of this run's changes; run plan to see them.\n", res.RollbackErr)
			} else {
				verb := "were"
				if res.Applied == 1 {
					verb = "was"
				}
				what := "A step failed"
				if errors.Is(err, context.Canceled) {
					what = "Interrupted" // SIGINT, SIGTERM
				}
				fmt.Fprintf(g.stdout, "%s: the %s this run made %s rolled back; the kernel is as it was.\n", what, plural(res.Applied, "change"), verb)
			}
		}
	}
	if res != nil && len(res.Plan.Conflicts) > 0 && g.output == "text" {
		_ = res.Plan.WriteText(g.stdout)
	} else if res != nil && g.output == "text" {
		for _, w := range res.Plan.Warnings {
			fmt.Fprintf(g.stdout, "warning: %s\n", w)
		}
		if res.NotReady > 0 {
			fmt.Fprintf(g.stdout, "warning: %d of the lab's links or IPv6 addresses not ready after %v (a link up with carrier but not running, or an address without its local route): traffic may fail for a moment\n",
				res.NotReady, reconcile.ReadyWait)
		}
	}
	g.logf("%s took %v", verb, time.Since(start))
	if errors.Is(err, context.Canceled) && res != nil && res.RolledBack && res.RollbackErr == nil {
		err = &codeError{exitError, fmt.Errorf("interrupted: nothing of this %s is left", verb)}
	}
	if g.output == "json" && res != nil {
		r := applyResult{Plan: res.Plan, Applied: res.Applied, RolledBack: res.RolledBack, SandboxRemoved: sandboxRemoved, NotReady: res.NotReady}
		if err != nil {
			r.Error = err.Error()
		}
		if g.holdJSON != nil && err == nil {
			*g.holdJSON = r // apply --check prints it with the checks
			return res, err
		}
		if jerr := g.json(r); jerr != nil {
			return res, jerr
		}
	}
	return res, err
}

type watchOptions struct {
	watch         bool
	debounce      time.Duration
	resync        time.Duration
	destroyOnExit bool
}

func newApplyCmd(g *globals) *cobra.Command {
	var wo watchOptions
	var runChecks bool
	cmd := &cobra.Command{
		Use:     "apply FILE",
		Example: "  netplan-lab --netns lab apply examples/bridge.yaml\n  netplan-lab --netns lab apply --check examples/bridge.yaml\n  netplan-lab --netns lab --prefix a- apply --watch lab.yaml",
		Short:   "Make the kernel match the topology, with a minimal plan",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := g.load(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			defer l.kernel.Close()
			if wo.watch {
				return g.watch(cmd.Context(), l, args[0], wo)
			}
			if err := g.notWatched(l, "apply"); err != nil {
				return err
			}
			// The --netns sandbox, if missing, is the plan's first change; a
			// failed apply removes it again.
			var held applyResult
			if runChecks && g.output == "json" {
				g.holdJSON = &held
			}
			res, err := g.report("apply", func() (*reconcile.Result, error) { return l.Apply(cmd.Context()) }, nil)
			if err != nil {
				return err
			}
			if g.output == "text" && res.Applied > 0 {
				fmt.Fprintf(g.stdout, "\nApply complete. %s\n", res.Plan.Summary()[len("Plan: "):])
			}
			if runChecks {
				if g.output == "text" {
					fmt.Fprintln(g.stdout)
					return g.runChecks(cmd.Context(), l, args[0])
				}
				return g.applyChecksJSON(cmd.Context(), l, args[0], held)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&runChecks, "check", false, "after applying, run the file's checks: (as netplan-lab check); exit 1 if one does not hold")
	f.BoolVar(&wo.watch, "watch", false, "keep running: apply edits to the file and repair drift until stopped")
	f.DurationVar(&wo.debounce, "debounce", 300*time.Millisecond, "with --watch: how long the file must be quiet before it is applied")
	f.DurationVar(&wo.resync, "resync", 10*time.Second, "with --watch: period of the full resync (it repairs sysctl drift, which the kernel sends no event for)")
	f.BoolVar(&wo.destroyOnExit, "destroy-on-exit", false, "with --watch: destroy the lab when stopped")
	return cmd
}

// notWatched refuses a one-shot apply or destroy of a lab that a watch
// keeps in line with its file: the watch would undo it at once (a new
// user's audit: destroy said it was done, and the watch made it all again
// a second later). Nothing is changed.
func (g *globals) notWatched(l *lab, verb string) error {
	if w := linux.Watcher(g.netns, l.Topology.Name, l.Prefix()); w != "" {
		return &codeError{exitError, fmt.Errorf("%s keeps this lab in line with its file and would undo this %s: stop it first (Ctrl-C; --destroy-on-exit takes the lab down with it), or edit the file it watches; nothing was changed", w, verb)}
	}
	return nil
}

// watch runs apply --watch until SIGINT/SIGTERM.
func (g *globals) watch(ctx context.Context, l *lab, file string, wo watchOptions) error {
	release, err := linux.HoldWatch(g.netns, l.Topology.Name, l.Prefix(), "netplan-lab "+strings.Join(g.args, " "))
	if err != nil {
		return &codeError{exitError, err}
	}
	defer release()
	events, err := l.kernel.Events(ctx)
	if err != nil {
		return err
	}
	name, prefix := l.topo.Name, l.topo.Prefix
	current := l.topo // the topology of the last valid file, for the hosts files
	var mu sync.Mutex
	report := func(e watch.Event) {
		mu.Lock()
		defer mu.Unlock()
		if g.output == "json" {
			b, _ := json.Marshal(e)
			fmt.Fprintln(g.stdout, string(b))
			return
		}
		fmt.Fprint(g.stdout, watch.FormatText(e))
	}
	err = watch.Run(ctx, watch.Config{
		File: file, Kernel: l.kernel, Events: events,
		Debounce: wo.debounce, Resync: wo.resync, Report: report, Lock: func(ctx context.Context) (func(), error) { return g.lock(ctx, l.Prefix()) },
		Load: func(f string, data []byte) (*reconcile.State, error) {
			t, err := topology.ParseWith(f, data, g.varsOf(), g.readOptions()...)
			if err != nil {
				return nil, err
			}
			switch {
			case t.Name != name:
				return nil, fmt.Errorf("%s: name changed (%q -> %q): a running watch keeps the lab it started with; restart it to move", f, name, t.Name)
			case g.prefix == "" && t.Prefix != prefix:
				return nil, fmt.Errorf("%s: prefix changed (%q -> %q): a running watch keeps the lab it started with; restart it to move", f, prefix, t.Prefix)
			}
			d, err := reconcile.Desired(t)
			if err == nil {
				current = t
			}
			return d, err
		},
		AfterApply: func() error { return l.WriteHosts(current) },
		Where:      func(err error) string { return netplanlab.Where(current, err) },
	})
	if err != nil {
		return err
	}
	if wo.destroyOnExit {
		ev := watch.Event{Time: time.Now(), Kind: "destroyed", Trigger: "exit"}
		res, removed, err := l.DestroyReporting(context.WithoutCancel(ctx), func(c *reconcile.Change, err error) {
			ev.Changes = append(ev.Changes, fmt.Sprintf("%s: %s %s", c.Namespace, c.Action, c.Describe()))
		})
		if removed {
			ev.Changes = append(ev.Changes, "host: - netns "+g.netns+" (the sandbox apply had created)")
		}
		if err != nil {
			ev.Kind, ev.Errors = "error", []string{"destroy on exit: " + err.Error()}
		} else if res != nil {
			ev.Summary = fmt.Sprintf("Destroy complete. %d destroyed.", res.Applied)
		}
		report(ev)
		return err
	}
	return nil
}

func newDestroyCmd(g *globals) *cobra.Command {
	var stale bool
	cmd := &cobra.Command{
		Use:     "destroy FILE | destroy --stale",
		Example: "  netplan-lab --netns lab destroy examples/bridge.yaml\n  netplan-lab destroy --stale",
		Short:   "Remove everything the topology owns, and nothing else (--stale: the labs of test processes that are gone)",
		Args: func(cmd *cobra.Command, args []string) error {
			if stale {
				return cobra.NoArgs(cmd, args)
			}
			return cobra.ExactArgs(1)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if stale {
				if err := linux.CheckPrivileges(); err != nil {
					return &codeError{exitError, err}
				}
				removed := netplanlab.RemoveStale()
				if g.output == "json" {
					return g.json(map[string]any{"removed": append([]string{}, removed...)})
				}
				if len(removed) == 0 {
					fmt.Fprintln(g.stdout, "No stale test labs.")
				}
				for _, sb := range removed {
					fmt.Fprintf(g.stdout, "Removed the lab in sandbox %s: the test process that made it is gone.\n", sb)
				}
				return nil
			}
			l, err := g.loadForDestroy(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			defer l.kernel.Close()
			if err := g.notWatched(l, "destroy"); err != nil {
				return err
			}
			// Nothing is ever created here: a missing sandbox or namespace
			// is observed as absent, and the plan only deletes.
			var removed bool
			res, err := g.report("destroy", func() (res *reconcile.Result, err error) {
				res, removed, err = l.Destroy(cmd.Context())
				return res, err
			}, &removed)
			if err != nil {
				return err
			}
			if g.output == "text" {
				if removed {
					fmt.Fprintf(g.stdout, "Removed netns %s, which apply had created.\n", g.netns)
				}
				if n := l.HostsEntriesRemoved(); res.Applied == 0 && !removed && n > 0 {
					fmt.Fprintf(g.stdout, "Nothing of %s was found in the kernel; its names were removed from %s (the entries of %s).\n", l.kernel.Identity(), netplanlab.EtcNetns, plural(n, "namespace"))
				} else if res.Applied == 0 && !removed {
					g.nothingFound(cmd.Context(), l)
				}
				switch {
				case res.Applied > 0:
					fmt.Fprintf(g.stdout, "\nDestroy complete. %d destroyed.\n", res.Applied)
				case removed:
					// A destroy stopped after the lab went, before the
					// sandbox did (an outside audit: the line above was
					// all it said).
					fmt.Fprintln(g.stdout, "\nDestroy complete. Nothing of the lab was left but its sandbox.")
				}
				stays := ""
				if !removed && g.netns != "" && res.Applied > 0 {
					stays, _ = l.kernel.SandboxStays()
				}
				host := l.desired.NS(reconcile.HostNS)
				switch {
				case stays != "" && host != nil && len(host.Sysctls) > 0:
					fmt.Fprintf(g.stdout, "The sandbox netns %s stays (%s); the sysctls the lab set there are back to the values they had before it (those another lab of the sandbox sets too stay, until it lets them go).\n", g.netns, stays)
				case stays != "":
					fmt.Fprintf(g.stdout, "The sandbox netns %s stays: %s.\n", g.netns, stays)
				case host != nil && len(host.Sysctls) > 0 && g.netns == "":
					fmt.Fprintln(g.stdout, "The machine's sysctls the lab set are back to the values they had before it.")
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&stale, "stale", false, "remove the labs of test processes (labtest) that are gone, and nothing else")
	return cmd
}

// nothingFound says that destroy found nothing of the lab, and where labs
// of that name are, if anywhere.
func (g *globals) nothingFound(ctx context.Context, l *lab) {
	fmt.Fprintf(g.stdout, "Nothing of %s was found; nothing was changed.\n", l.kernel.Identity())
	for _, h := range elsewhere(ctx, l, "destroy it", "destroy FILE") {
		fmt.Fprintln(g.stdout, h)
	}
}

// elsewhere is a hint for each lab of l's name under another sandbox or
// prefix: "Hint: LAB is there (N namespaces); to WHAT: netplan-lab FLAGS
// CMD" (a wrong or forgotten --netns or --prefix).
func elsewhere(ctx context.Context, l *lab, what, cmd string) []string {
	id := l.kernel.Identity()
	labs, err := linux.ScanLabs(ctx)
	if err != nil {
		return nil
	}
	var out []string
	for _, other := range labs {
		if other.ID.Name != id.Name || other.ID == id {
			continue
		}
		flags := ""
		if other.ID.Netns != "" {
			flags += " --netns " + other.ID.Netns
		}
		if other.ID.Prefix != "" {
			flags += " --prefix " + other.ID.Prefix
		}
		out = append(out, fmt.Sprintf("Hint: %s is there (%s); to %s: netplan-lab%s %s", other.ID, plural(len(other.Namespaces), "namespace"), what, flags, cmd))
	}
	return out
}

func newShowCmd(g *globals) *cobra.Command {
	var detailed bool
	cmd := &cobra.Command{
		Use:     "show FILE",
		Example: "  netplan-lab --netns lab show examples/bridge.yaml\n  netplan-lab --netns lab show --detailed-exitcode examples/bridge.yaml   # 2: drift",
		Short:   "Show what the topology owns in the kernel now, and any drift from the file",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := g.load(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			defer l.kernel.Close()
			start := time.Now()
			observed, err := l.kernel.Observe(cmd.Context(), reconcile.QueryFor(l.desired))
			if err != nil {
				return err
			}
			g.logf("stage observe: %v", time.Since(start).Round(time.Microsecond))
			start = time.Now()
			owned := ownSysctls(reconcile.AsDesired(observed), l.desired, observed)
			drift := reconcile.Diff(l.desired, observed)
			g.logf("stage plan: %s in %v", plural(len(drift.Changes), "change"), time.Since(start).Round(time.Microsecond))
			if g.output == "json" {
				drift.Netns = l.KernelNames()
				out := map[string]any{"state": owned, "drift": drift, "netns": drift.Netns}
				if l.topo.Vars != nil {
					out["variables"] = l.topo.Vars
				}
				if err := g.json(out); err != nil {
					return err
				}
				if detailed && (!drift.Empty() || len(drift.Conflicts) > 0) {
					return &codeError{exitPending, nil}
				}
				return nil
			}
			shown := 0
			for _, name := range owned.SortedNames() {
				ns := owned.Namespaces[name]
				kname := l.kernel.KernelName(name)
				if !ns.Owned && len(ns.Links) == 0 && len(ns.Routes) == 0 && len(ns.Sysctls) == 0 && len(ns.NAT) == 0 {
					continue
				}
				shown++
				fmt.Fprintf(g.stdout, "namespace %s (netns %s):\n", name, kname)
				for _, ln := range sortedKeys(ns.Links) {
					lk := ns.Links[ln]
					state := "down"
					if lk.Up {
						state = "up"
					}
					extra := ""
					if lk.Peer != nil {
						extra += " peer " + lk.Peer.String()
					}
					if lk.Parent != nil {
						extra += " parent " + lk.Parent.String()
					}
					if lk.Master != "" {
						extra += " master " + lk.Master
					}
					fmt.Fprintf(g.stdout, "  %-8s %-15s %-4s mtu %d mac %s%s\n", lk.Kind, ln, state, lk.MTU, lk.MAC, extra)
					if lk.Impair != nil {
						fmt.Fprintf(g.stdout, "           impair %s\n", lk.Impair)
					}
					for _, a := range lk.Addresses {
						fam := "inet"
						if strings.Contains(a, ":") {
							fam = "inet6"
						}
						fmt.Fprintf(g.stdout, "           %-5s %s\n", fam, a)
					}
				}
				for _, rk := range sortedKeys(ns.Routes) {
					fmt.Fprintf(g.stdout, "  route    %s\n", ns.Routes[rk])
				}
				for _, sk := range sortedKeys(ns.Sysctls) {
					how := ""
					if ns.IPv6Inferred && slices.Contains(reconcile.IPv6Switch, sk) {
						how = " (as every interface has it; not read, see docs/topology.md)"
					}
					fmt.Fprintf(g.stdout, "  sysctl   %s = %s%s\n", sk, ns.Sysctls[sk], how)
				}
				for _, id := range sortedKeys(ns.NAT) {
					fmt.Fprintf(g.stdout, "  nat      %s (table inet %s)\n", id, l.kernel.TableName())
				}
			}
			if shown == 0 {
				fmt.Fprintf(g.stdout, "Nothing of lab %q is in the kernel (sandbox %s, prefix %q).\n", l.topo.Name, l.kernel.KernelName(reconcile.HostNS), l.kernel.Identity().Prefix)
			}
			fmt.Fprintln(g.stdout)
			if drift.Empty() && len(drift.Conflicts) == 0 {
				fmt.Fprintln(g.stdout, "No drift: the kernel matches the topology.")
				return nil
			}
			fmt.Fprintln(g.stdout, "Drift from the file (what apply would do):")
			if err := drift.WriteText(g.stdout); err != nil {
				return err
			}
			if detailed {
				return &codeError{exitPending, nil}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&detailed, "detailed-exitcode", false, "exit 0 when the kernel matches the file, 2 when it drifted, 1 on error")
	return cmd
}

// ownSysctls keeps, in owned (what show lists), the sysctls the file
// sets and those the lab's record noted: host's observation also reads
// the keys other labs of the sandbox set (SysctlsShared), which are
// theirs, not this lab's.
func ownSysctls(owned, desired, observed *reconcile.State) *reconcile.State {
	for name, ns := range owned.Namespaces {
		var wanted, noted map[string]string
		if w := desired.NS(name); w != nil {
			wanted = w.Sysctls
		}
		if h := observed.NS(name); h != nil {
			noted = h.SysctlsBefore
		}
		for k := range ns.Sysctls {
			_, w := wanted[k]
			_, n := noted[k]
			if !w && !n {
				delete(ns.Sysctls, k)
			}
		}
	}
	return owned
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sortStrings(keys)
	return keys
}

func sortStrings(s []string) { sort.Strings(s) }

// plural is "1 problem", "2 problems".
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
