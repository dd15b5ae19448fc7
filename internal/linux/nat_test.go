package linux

import (
	"reflect"
	"testing"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/netplan-lab/netplan-lab/reconcile"
)

func pad(s string) []byte { b := make([]byte, 16); copy(b, s); return b }

// These tests need no kernel: they pin the expressions each rule compiles
// to, each with the nft syntax it means.
func TestCompileMasquerade(t *testing.T) {
	got, err := CompileNAT(&reconcile.NATRule{Kind: reconcile.NATMasquerade, Source: "192.168.88.0/24", NotOut: "br0"})
	if err != nil {
		t.Fatal(err)
	}
	want := []compiledRule{{chainPost, []expr.Any{
		// meta nfproto ipv4
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
		// ip saddr 192.168.88.0/24
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{255, 255, 255, 0}, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{192, 168, 88, 0}},
		// oifname != "br0"
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: pad("br0")},
		// counter masquerade
		&expr.Counter{},
		&expr.Masq{},
	}}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v", got)
	}
}

func TestCompileSNATv6(t *testing.T) {
	got, err := CompileNAT(&reconcile.NATRule{Kind: reconcile.NATSNAT, Source: "fd00::/64", To: "fd01::5", Out: "wan"})
	if err != nil {
		t.Fatal(err)
	}
	to := []byte{0xfd, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5}
	want := []compiledRule{{chainPost, []expr.Any{
		// meta nfproto ipv6
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV6}},
		// ip6 saddr fd00::/64
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 16},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 16,
			Mask: []byte{255, 255, 255, 255, 255, 255, 255, 255, 0, 0, 0, 0, 0, 0, 0, 0}, Xor: make([]byte, 16)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
		// oifname "wan"
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: pad("wan")},
		// counter snat ip6 to fd01::5
		&expr.Counter{},
		&expr.Immediate{Register: 1, Data: to},
		&expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV6, RegAddrMin: 1, RegAddrMax: 1},
	}}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v", got)
	}
}

func TestCompilePortForward(t *testing.T) {
	got, err := CompileNAT(&reconcile.NATRule{Kind: reconcile.NATPortForward, Proto: "tcp", Port: 8080, To: "10.55.66.2:80", In: "eth0"})
	if err != nil {
		t.Fatal(err)
	}
	tail := []expr.Any{
		// fib daddr type local
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.RTN_LOCAL, 0, 0, 0}},
		// th dport 8080
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0x1f, 0x90}},
		// counter dnat ip to 10.55.66.2:80
		&expr.Counter{},
		&expr.Immediate{Register: 1, Data: []byte{10, 55, 66, 2}},
		&expr.Immediate{Register: 2, Data: []byte{0, 80}},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegAddrMax: 1, RegProtoMin: 2, RegProtoMax: 2, Specified: true},
	}
	head := []expr.Any{
		// meta nfproto ipv4 meta l4proto tcp
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
	}
	pre := append(append(append([]expr.Any{}, head...),
		// iifname "eth0"
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: pad("eth0")}), tail...)
	out := append(append([]expr.Any{}, head...), tail...)
	want := []compiledRule{{chainPre, pre}, {chainOut, out}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v", got)
	}
}
