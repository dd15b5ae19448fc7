package bench

import (
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"sort"
	"testing"
	"time"

	"github.com/netplan-lab/netplan-lab/labtest"
)

// The fixture a Go test would want: two namespaces and a veth between them.
const pairLab = `name: pair
namespaces: {a: {}, b: {}}
links:
  - a: {namespace: a, name: eth0, addresses: [10.0.0.1/24]}
    b: {namespace: b, name: eth0, addresses: [10.0.0.2/24]}
`

// pairScript is the same fixture as `ip` commands a test would run, up and
// down.
func pairScript(prefix string) string {
	return fmt.Sprintf(`set -e
ip netns add %[1]sa
ip netns add %[1]sb
ip -n %[1]sa link set lo up
ip -n %[1]sb link set lo up
ip -n %[1]sa link add eth0 type veth peer name eth0 netns %[1]sb
ip -n %[1]sa addr add 10.0.0.1/24 dev eth0
ip -n %[1]sb addr add 10.0.0.2/24 dev eth0
ip -n %[1]sa link set eth0 up
ip -n %[1]sb link set eth0 up
ip netns del %[1]sa
ip netns del %[1]sb
`, prefix)
}

func median(d []time.Duration) time.Duration {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[len(d)/2]
}

// BenchmarkLabtestUp: labtest.Up and its cleanup of a two-namespace lab,
// against the same fixture made and removed with `ip` commands, 10 each,
// medians.
func BenchmarkLabtestUp(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("the benchmark needs root: it makes namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		b.Skip("the baseline needs the ip command (apt-get install iproute2)")
	}
	var ipT, ltT []time.Duration
	for i := 0; i < 10; i++ {
		prefix := fmt.Sprintf("npl-bench-p%04x-", rand.Intn(0xffff))
		ipT = append(ipT, runScript(b, pairScript(prefix)))
		start := time.Now()
		b.Run(fmt.Sprint(i), func(b *testing.B) { labtest.UpYAML(b, pairLab) })
		ltT = append(ltT, time.Since(start))
	}
	ip, lt := median(ipT), median(ltT)
	fmt.Printf("two-namespace fixture: labtest.Up + cleanup %.1f ms, ip commands %.1f ms (%.1fx)\n",
		float64(lt.Microseconds())/1000, float64(ip.Microseconds())/1000, float64(ip)/float64(lt))
	b.ReportMetric(float64(lt.Microseconds())/1000, "labtest-ms")
	b.ReportMetric(float64(ip.Microseconds())/1000, "ip-ms")
}
