package netsum

import (
	"os"
	"testing"
)

// TestOpenWithNetRawOnly opens a live capture; run it as an unprivileged
// user holding only CAP_NET_RAW (see docs/network-summaries.md):
//
//	NETSUM_CAPS_CHECK=1 setpriv --reuid=nobody --regid=nogroup --clear-groups \
//	  --inh-caps=-all,+net_raw --ambient-caps=-all,+net_raw --bounding-set=-all,+net_raw ./netsum.test -test.run TestOpenWithNetRawOnly
func TestOpenWithNetRawOnly(t *testing.T) {
	if os.Getenv("NETSUM_CAPS_CHECK") != "1" {
		t.Skip("set NETSUM_CAPS_CHECK=1 and run under setpriv (see the comment)")
	}
	h, err := openLive("lo", 1600, "tcp port 80 and not (net 10.0.0.0/8 or port 22)", false, 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer h.close()
	if _, _, _, err := h.stats(); err != nil {
		t.Fatal(err)
	}
	t.Logf("uid %d: capture opened, filter compiled, stats read", os.Getuid())
}
