package linux

import (
	"testing"

	"github.com/vishvananda/netlink"
)

// TestRetryOutlastsABusyKernel: a dump interrupted a dozen times in a row
// (the kernel still removing a thousand namespaces' veths) is tried again
// until it comes through; one interrupted for longer than retryFor fails
// with the interruption.
func TestRetryOutlastsABusyKernel(t *testing.T) {
	n := 0
	v, err := retry(func() (int, error) {
		if n++; n <= 12 {
			return 0, netlink.ErrDumpInterrupted
		}
		return n, nil
	})
	if err != nil || v != 13 {
		t.Fatalf("after 12 interruptions: %d, %v; want 13, nil", v, err)
	}
}
