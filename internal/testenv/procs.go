package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// RepoRoot is the repository's root directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Build builds the command ./cmd/NAME of the repository (the real binary,
// as operators run it) into a temporary directory and returns its path.
func Build(t testing.TB, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	cmd := exec.CommandContext(context.Background(), "go", "build", "-o", bin, "./cmd/"+name) //nolint:gosec // G204: builds one of the repository's own commands
	cmd.Dir = RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", name, err, out)
	}
	return bin
}

// FreePorts returns n distinct TCP ports free on 127.0.0.1 at the time of
// the call.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		_ = l.Close()
	}
	return ports
}

// PrivateKafka is a throwaway Kafka broker of one test, run by
// `deploy/dev/services kafka-private`: its own data directory and ports,
// the dev certificates on its mutual-TLS listener (so certificates signed
// by the dev CA are accepted). The test may stop and start it.
type PrivateKafka struct {
	t              testing.TB
	script, dir    string
	Plain, TLS, Ct int // listener ports: plaintext, mutual TLS, controller
}

// StartPrivateKafka starts a private broker, stopped and removed at the end
// of the test.
func StartPrivateKafka(t testing.TB) *PrivateKafka {
	t.Helper()
	p := FreePorts(t, 3)
	dir, err := os.MkdirTemp("", "csirt-private-kafka-")
	if err != nil {
		t.Fatal(err)
	}
	k := &PrivateKafka{t: t, script: filepath.Join(RepoRoot(), "deploy", "dev", "services"), dir: dir, Plain: p[0], TLS: p[1], Ct: p[2]}
	k.run("start", dir, fmt.Sprint(p[0]), fmt.Sprint(p[1]), fmt.Sprint(p[2]))
	t.Cleanup(func() {
		k.run("stop", dir)
		_ = os.RemoveAll(dir)
	})
	return k
}

// PlainAddr is host:port of the plaintext listener; TLSAddr of the
// mutual-TLS one.
func (k *PrivateKafka) PlainAddr() string { return fmt.Sprintf("127.0.0.1:%d", k.Plain) }

// TLSAddr is host:port of the mutual-TLS listener.
func (k *PrivateKafka) TLSAddr() string { return fmt.Sprintf("127.0.0.1:%d", k.TLS) }

func (k *PrivateKafka) run(args ...string) {
	k.t.Helper()
	cmd := exec.CommandContext(context.Background(), k.script, append([]string{"kafka-private"}, args...)...) //nolint:gosec // G204: the repository's own deploy/dev/services
	if out, err := cmd.CombinedOutput(); err != nil {
		k.t.Fatalf("services kafka-private %v: %v\n%s", args, err, out)
	}
}

// Start starts the broker again on the same data.
func (k *PrivateKafka) Start() { k.run("start", k.dir) }

// Stop stops the broker (its data is kept).
func (k *PrivateKafka) Stop() { k.run("stop", k.dir) }

// DevCA returns the dev CA certificate and key files (the CA the dev
// brokers trust for client certificates).
func DevCA(t testing.TB) (certFile, keyFile string) {
	t.Helper()
	dir := os.Getenv(EnvKafkaTLSDir)
	if dir == "" {
		missing(t, "the dev certificates ("+EnvKafkaTLSDir+")")
	}
	certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "private", "ca-key.pem")
	for _, f := range []string{certFile, keyFile} {
		if _, err := os.Stat(f); err != nil {
			missing(t, "the dev CA ("+f+")")
		}
	}
	return certFile, keyFile
}

// Proc is a program of the platform run as a child process, its output in
// a log file that is printed (its end) when the test fails.
type Proc struct {
	t    testing.TB
	Name string
	Args []string
	Env  []string // added to the test's environment
	Log  string   // path of the output file
	cmd  *exec.Cmd
	done chan error
	out  *os.File
}

// NewProc prepares a process; Start runs it. Cleanup kills it if it is
// still running at the end of the test.
func NewProc(t testing.TB, name string, args ...string) *Proc {
	t.Helper()
	p := &Proc{t: t, Name: name, Args: args, Log: filepath.Join(t.TempDir(), filepath.Base(name)+".log")}
	t.Cleanup(func() {
		if p.Running() {
			p.Kill()
		}
		if t.Failed() {
			b, _ := os.ReadFile(p.Log)
			if len(b) > 8000 {
				b = b[len(b)-8000:]
			}
			t.Logf("%s output (end):\n%s", filepath.Base(name), b)
		}
	})
	return p
}

// Start runs the process (again, after a Kill or Term), appending to its
// log.
func (p *Proc) Start() {
	p.t.Helper()
	f, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		p.t.Fatal(err)
	}
	fmt.Fprintf(f, "=== %s start %s\n", time.Now().Format(time.RFC3339Nano), filepath.Base(p.Name))
	p.out = f
	p.cmd = exec.CommandContext(context.Background(), p.Name, p.Args...) //nolint:gosec // G204: a program the test built, with the test's arguments
	p.cmd.Env = append(os.Environ(), p.Env...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		_ = f.Close()
		p.t.Fatalf("starting %s: %v", p.Name, err)
	}
	p.done = make(chan error, 1)
	go func(c *exec.Cmd, done chan error, f *os.File) {
		err := c.Wait()
		_ = f.Close()
		done <- err
	}(p.cmd, p.done, f)
}

// Running reports whether the process was started and has not exited.
func (p *Proc) Running() bool {
	if p.cmd == nil || p.done == nil {
		return false
	}
	select {
	case err := <-p.done:
		p.done <- err // keep it for Wait
		return false
	default:
		return true
	}
}

// Exited reports whether the process has exited, and its exit error.
func (p *Proc) Exited() (bool, error) {
	select {
	case err := <-p.done:
		p.done <- err
		return true, err
	default:
		return false, nil
	}
}

// Kill sends SIGKILL and waits for the exit.
func (p *Proc) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	if err := <-p.done; err == nil {
		p.t.Logf("%s exited by itself before SIGKILL reached it", filepath.Base(p.Name))
	}
	p.done = nil
}

// Term sends SIGTERM and returns the exit error; the test fails if the
// process is still running after timeout.
func (p *Proc) Term(timeout time.Duration) error {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done = nil
		return err
	case <-time.After(timeout):
		p.t.Fatalf("%s did not stop within %s of SIGTERM", filepath.Base(p.Name), timeout)
		return nil
	}
}

// Pid is the process id of the running process.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }
