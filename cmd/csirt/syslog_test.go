package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/csirt-toscana/platform/internal/store"
	"github.com/csirt-toscana/platform/internal/store/sqlite"
)

// TestServeSyslogFromDevice runs `csirt serve` with the syslog intake on,
// registers an entity and a device with `csirt admin` while it runs, and
// sends an sshd line with util-linux logger over UDP and TCP: both arrive in
// the store as parsed sshd events of the device's entity.
func TestServeSyslogFromDevice(t *testing.T) {
	logger, err := exec.LookPath("logger")
	if err != nil {
		t.Fatalf("logger (util-linux) is needed: deploy/dev/packages installs it: %v", err)
	}
	bin := binary(t)
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	udp, tcp := freePort(t), freePort(t)
	cfg := filepath.Join(dir, "csirt.yml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(
		"bus:\n  embedded:\n    listen: %s\nintake:\n  listen: \"\"\nsyslog:\n  udp_listen: %s\n  tcp_listen: %s\n",
		freePort(t), udp, tcp)), 0o600))
	n := start(t, bin, dataDir, cfg, freePort(t))

	admin := func(args ...string) {
		out, err := exec.Command(bin, append([]string{"admin"}, append(args, "--config", cfg, "--data-dir", dataDir)...)...).CombinedOutput()
		require.NoError(t, err, "csirt admin %v: %s", args, out)
	}
	admin("entity", "add", "comune-test", "--name", "Comune di Test")
	admin("device", "add", "fw-test", "--entity", "comune-test", "--cidr", "127.0.0.1/32", "--hostname", "fw-test")

	send := func(proto, addr, user string) {
		host, port, _ := strings.Cut(addr, ":")
		msg := fmt.Sprintf("Failed password for invalid user %s from 203.0.113.7 port 4242 ssh2", user)
		out, err := exec.Command(logger, "--rfc5424", proto, "-n", host, "-P", port, "-t", "sshd", "-i", msg).CombinedOutput()
		require.NoError(t, err, "logger: %s", out)
	}

	st, err := sqlite.Open(context.Background(), sqlite.Options{Path: filepath.Join(dataDir, "store.db")})
	require.NoError(t, err)
	defer st.Close()
	want := map[string]bool{"udpuser": false, "tcpuser": false}
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		// The registry learns the new device on a miss (at most every 10 s):
		// keep sending until both arrive.
		send("-d", udp, "udpuser")
		send("-T", tcp, "tcpuser")
		time.Sleep(time.Second)
		for u := range want {
			res, err := st.Search(context.Background(), store.TenantScope("comune-test"), store.Events,
				store.SearchRequest{Query: "event.dataset:sshd AND source.ip:203.0.113.7 AND host.name:fw-test AND user.name:" + u, Size: 1})
			require.NoError(t, err)
			want[u] = want[u] || res.Total > 0
		}
		if want["udpuser"] && want["tcpuser"] {
			break
		}
	}
	require.True(t, want["udpuser"] && want["tcpuser"], "events arrived: %v; node log:\n%s", want, n.log)
	n.stop(t)
}
