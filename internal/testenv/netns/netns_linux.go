//go:build linux

package netns

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/csirt-toscana/platform/internal/testenv"
)

// Lab is a network namespace NS joined to the root namespace by a veth
// pair: HostIP on HostIf in the root namespace, PeerIP on PeerIf inside
// NS, both in one /24.
type Lab struct {
	NS, HostIf, PeerIf string
	HostIP, PeerIP     string
}

// Require stops the test (testenv.Unavailable: it fails under CI=true and
// skips elsewhere) unless it runs as root and the tools are installed.
// "ip" is always required.
func Require(t testing.TB, tools ...string) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (network namespaces, raw sockets)")
	}
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, "the "+tool+" tool")
		}
	}
	if len(missing) > 0 {
		testenv.Unavailable(t, "this test needs "+strings.Join(missing, ", ")+": run it as root with the tools of deploy/dev/packages installed")
	}
}

// New creates a namespace and its veth pair, removed when the test ends
// (whatever the outcome). tag (1 to 4 lower-case letters or digits) names
// the caller, so labs of test binaries running at the same time have
// distinct names; the /24 is one that no address of the root namespace is
// in. It needs root and the ip tool (see Require).
func New(t testing.TB, tag string) *Lab {
	t.Helper()
	Require(t)
	if tag == "" || len(tag) > 4 {
		t.Fatalf("netns.New: tag %q must be 1 to 4 characters", tag)
	}
	pid := os.Getpid()
	subnet, err := freeSubnet(pid)
	if err != nil {
		t.Fatal(err)
	}
	l := &Lab{
		NS:     fmt.Sprintf("%s-%d", tag, pid),
		HostIf: fmt.Sprintf("%s%da", tag, pid%100000),
		PeerIf: fmt.Sprintf("%s%db", tag, pid%100000),
		HostIP: subnet + ".1",
		PeerIP: subnet + ".2",
	}
	l.remove() // leftovers of an earlier run with the same pid
	run(t, "ip", "netns", "add", l.NS)
	t.Cleanup(l.remove)
	run(t, "ip", "link", "add", l.HostIf, "type", "veth", "peer", "name", l.PeerIf)
	run(t, "ip", "link", "set", l.PeerIf, "netns", l.NS)
	run(t, "ip", "addr", "add", l.HostIP+"/24", "dev", l.HostIf)
	run(t, "ip", "link", "set", l.HostIf, "up")
	run(t, "ip", "netns", "exec", l.NS, "ip", "addr", "add", l.PeerIP+"/24", "dev", l.PeerIf)
	run(t, "ip", "netns", "exec", l.NS, "ip", "link", "set", l.PeerIf, "up")
	run(t, "ip", "netns", "exec", l.NS, "ip", "link", "set", "lo", "up")
	return l
}

// remove deletes the veth pair and the namespace, if they exist.
func (l *Lab) remove() {
	_ = exec.CommandContext(context.Background(), "ip", "link", "del", l.HostIf).Run() //nolint:gosec // the lab's own interface
	_ = exec.CommandContext(context.Background(), "ip", "netns", "del", l.NS).Run()    //nolint:gosec // the lab's own namespace
}

// freeSubnet picks 10.214.N (N from the pid) such that no address of the
// root namespace is in 10.214.N.0/24.
func freeSubnet(pid int) (string, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", fmt.Errorf("listing the interface addresses: %w", err)
	}
	used := map[int]bool{}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip4 := n.IP.To4(); ip4 != nil && ip4[0] == 10 && ip4[1] == 214 {
				used[int(ip4[2])] = true
			}
		}
	}
	for i := range 250 {
		n := (pid+i)%250 + 1
		if !used[n] {
			return fmt.Sprintf("10.214.%d", n), nil
		}
	}
	return "", errors.New("every 10.214.N.0/24 is in use on this machine: remove leftover test interfaces (ip link)")
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	out, err := exec.CommandContext(context.Background(), name, args...).CombinedOutput() //nolint:gosec // test commands
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// Command is name run inside the lab's namespace (ip netns exec).
func (l *Lab) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", l.NS, name}, args...)...) //nolint:gosec // test commands
}

// Do runs fn on a goroutine whose OS thread has joined the network
// namespace ns (a name under /var/run/netns), and waits for it. Sockets fn
// creates on that goroutine (net.Dial, net.ListenPacket) belong to the
// namespace. The thread is never unlocked, so the Go runtime discards it
// when fn returns instead of reusing a thread that sits in another
// namespace.
func Do(ns string, fn func() error) error {
	f, err := os.Open(filepath.Join("/var/run/netns", ns)) //nolint:gosec // a namespace the test made
	if err != nil {
		return fmt.Errorf("opening network namespace %s: %w", ns, err)
	}
	defer func() { _ = f.Close() }()
	done := make(chan error, 1)
	go func() {
		// Not unlocked on purpose: see the doc comment.
		runtime.LockOSThread()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil { //nolint:gosec // a file descriptor fits in an int
			done <- fmt.Errorf("setns into %s: %w", ns, err)
			return
		}
		done <- fn()
	}()
	return <-done
}

// Beacon connects from the namespace ns to addr (host:port) beats+1 times
// (beats intervals), every period ± jitter (uniform, fixed seed), each time
// on a new TCP connection sending one HTTP GET and reading the answer.
func Beacon(ns, addr string, beats int, period, jitter time.Duration) error {
	return Do(ns, func() error {
		rng := mrand.New(mrand.NewPCG(7, 11)) //nolint:gosec // jitter of a test beacon, not a secret
		next := time.Now()
		for i := 0; i <= beats; i++ {
			time.Sleep(time.Until(next))
			conn, err := (&net.Dialer{Timeout: 2 * time.Second}).Dial("tcp4", addr)
			if err != nil {
				return fmt.Errorf("beacon %d: %w", i, err)
			}
			_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
			_, err = fmt.Fprintf(conn, "GET /beacon?n=%d HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", i, addr)
			if err == nil {
				var resp *http.Response
				if resp, err = http.ReadResponse(bufio.NewReader(conn), nil); err == nil {
					_ = resp.Body.Close()
				}
			}
			_ = conn.Close()
			if err != nil {
				return fmt.Errorf("beacon %d: %w", i, err)
			}
			next = next.Add(period + time.Duration((rng.Float64()*2-1)*float64(jitter)))
		}
		return nil
	})
}

// DNSQuery is a DNS query message for name and type (RFC 1035 4.1).
func DNSQuery(id uint16, name string, qtype uint16) []byte {
	q := make([]byte, 12, 12+len(name)+6)
	binary.BigEndian.PutUint16(q[0:], id)
	binary.BigEndian.PutUint16(q[2:], 0x0100) // recursion desired
	binary.BigEndian.PutUint16(q[4:], 1)      // qdcount
	for _, l := range strings.Split(name, ".") {
		q = append(q, byte(len(l)))
		q = append(q, l...)
	}
	q = append(q, 0)
	q = binary.BigEndian.AppendUint16(q, qtype)
	return binary.BigEndian.AppendUint16(q, 1) // class IN
}

// TunnelQueries sends n TXT queries for <52 random base32 characters>.parent
// from the namespace ns to server (host:port), each from a new socket, and
// waits for each answer. It returns the names sent.
func TunnelQueries(ns, server, parent string, n int) ([]string, error) {
	enc := base32.StdEncoding.WithPadding(base32.NoPadding)
	var names []string
	err := Do(ns, func() error {
		buf := make([]byte, 1500)
		for i := range n {
			chunk := make([]byte, 32)
			_, _ = rand.Read(chunk)
			name := strings.ToLower(enc.EncodeToString(chunk)) + "." + parent
			conn, err := (&net.Dialer{}).DialContext(context.Background(), "udp4", server)
			if err != nil {
				return fmt.Errorf("query %d: %w", i, err)
			}
			_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
			_, err = conn.Write(DNSQuery(uint16(0x4000+i), name, 16)) //nolint:gosec // i < n is small
			if err == nil {
				_, err = conn.Read(buf)
			}
			_ = conn.Close()
			if err != nil {
				return fmt.Errorf("query %d for %s: %w", i, name, err)
			}
			names = append(names, name)
		}
		return nil
	})
	return names, err
}

// ServeDNS answers every query on addr (host:port, UDP) with one A record,
// 192.0.2.7 (a documentation address), until the test ends.
func ServeDNS(t testing.TB, addr string) {
	t.Helper()
	pc, err := (&net.ListenConfig{}).ListenPacket(context.Background(), "udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp := dnsAnswer(buf[:n]); resp != nil {
				_, _ = pc.WriteTo(resp, from)
			}
		}
	}()
}

// dnsAnswer is the response to the query q, nil when q is not a query.
func dnsAnswer(q []byte) []byte {
	if len(q) < 12 {
		return nil
	}
	// the question ends after the name and 4 bytes of type and class
	end := 12
	for end < len(q) && q[end] != 0 {
		end += int(q[end]) + 1
	}
	end += 5
	if end > len(q) {
		return nil
	}
	resp := append([]byte(nil), q[:end]...)
	binary.BigEndian.PutUint16(resp[2:], 0x8180)
	binary.BigEndian.PutUint16(resp[6:], 1)  // ancount
	binary.BigEndian.PutUint16(resp[8:], 0)  // nscount
	binary.BigEndian.PutUint16(resp[10:], 0) // arcount (drop EDNS)
	return append(resp, 0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 7)
}

// ServeHTTP answers "ok" to every request on addr (host:port, TCP) until
// the test ends.
func ServeHTTP(t testing.TB, addr string) {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
}
