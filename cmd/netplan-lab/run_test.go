package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
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
// empty host and touches nothing.
func sandbox() string { return fmt.Sprintf("npl-test-cli%04x", rand.Intn(0xffff)) }

func TestPlanDetailedExitCodeAndJSON(t *testing.T) {
	sb := sandbox()
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
	sb := sandbox()
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
	if code != 0 || !strings.Contains(out, "Apply complete. 9 to add, 0 to change") {
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
	if code != 1 || !strings.Contains(out, `conflict: bridge "br0" in namespace "host" already exists and is not owned by this topology`) ||
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
		len(shown.State.Namespaces["host"].Links) != 3 || shown.Drift.Summary.Add != 0 {
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
	code, out, _ = runCLI(args("destroy", "../../examples/router.yaml")...)
	if code != 0 || !strings.Contains(out, "Removed netns "+sb) {
		t.Fatalf("destroy: code %d\n%s", code, out)
	}
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), pfx) || e.Name() == sb {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}
