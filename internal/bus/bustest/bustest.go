// Package bustest is the conformance suite of internal/bus: every broker the
// platform supports (real Kafka, the embedded broker) runs the same tests
// through the same client code, in the spirit of testing/slogtest.
//
// A test package that calls Run must also declare the helper test that the
// killed-consumer test re-executes in a subprocess:
//
//	func TestBustestHelper(t *testing.T) { bustest.Helper(t) }
package bustest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/bus"
)

// helperBatch is how many messages the subprocess consumer commits at once.
const helperBatch = 100

// HelperTestName is the name of the test function that must call Helper.
const HelperTestName = "TestBustestHelper"

// Environment of the helper subprocess.
const (
	envHelper  = "CSIRT_BUSTEST_HELPER"
	envBrokers = "CSIRT_BUSTEST_BROKERS"
	envTopic   = "CSIRT_BUSTEST_TOPIC"
	envGroup   = "CSIRT_BUSTEST_GROUP"
)

// Run runs the conformance suite. newOptions returns the connection options
// of the broker under test; each test uses its own topics and groups.
func Run(t *testing.T, newOptions func(t *testing.T) bus.Options) {
	t.Run("EnsureTopicsIdempotent", func(t *testing.T) { testEnsureTopics(t, newOptions(t)) })
	t.Run("Compression", func(t *testing.T) { testCompression(t, newOptions(t)) })
	t.Run("HundredThousand", func(t *testing.T) { testHundredThousand(t, newOptions(t)) })
	// The killed consumer runs in a subprocess that connects in plaintext,
	// so the test exists only for plaintext brokers (the mTLS run checks
	// the TLS path with the other tests).
	if probe := newOptions(t); probe.TLS == nil && probe.SASL == nil {
		t.Run("KilledConsumerResumes", func(t *testing.T) { testKilledConsumer(t, newOptions(t)) })
	}
	t.Run("PoisonToDLQ", func(t *testing.T) { testPoison(t, newOptions(t)) })
}

var unsafeChars = regexp.MustCompile(`[^a-zA-Z0-9._-]+`)

// Unique returns a topic or group name unique to this test and run.
func Unique(t testing.TB, what string) string {
	n := unsafeChars.ReplaceAllString(t.Name(), "-")
	return fmt.Sprintf("bustest.%s.%s.%d", n, what, time.Now().UnixNano())
}

func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func mustTopic(t testing.TB, ctx context.Context, opts bus.Options, name string, partitions int) {
	t.Helper()
	if err := bus.EnsureTopics(ctx, opts, []bus.TopicSpec{{Name: name, Partitions: partitions, ReplicationFactor: 1}}); err != nil {
		t.Fatalf("EnsureTopics(%s): %v", name, err)
	}
}

func newProducer(t testing.TB, opts bus.Options) *bus.Producer {
	t.Helper()
	p, err := bus.NewProducer(bus.ProducerOptions{Options: opts})
	if err != nil {
		t.Fatalf("NewProducer: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("closing producer: %v", err)
		}
	})
	return p
}

// newConsumer builds a consumer with the session timeout the brokers'
// default minimum allows, so a killed member is expired quickly.
func newConsumer(t testing.TB, opts bus.Options, group string, topics ...string) *bus.Consumer {
	t.Helper()
	c, err := bus.NewConsumer(bus.ConsumerOptions{Options: opts, GroupID: group, Topics: topics, SessionTimeout: 6 * time.Second})
	if err != nil {
		t.Fatalf("NewConsumer: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil { // Close is idempotent
			t.Errorf("closing consumer: %v", err)
		}
	})
	return c
}

func testEnsureTopics(t *testing.T, opts bus.Options) {
	ctx := ctxFor(t, time.Minute)
	a, b := Unique(t, "a"), Unique(t, "b")
	specs := []bus.TopicSpec{
		{Name: a, Partitions: 4, ReplicationFactor: 1, Retention: time.Hour},
		{Name: b, Partitions: 2, ReplicationFactor: 1, Configs: map[string]string{"cleanup.policy": "delete"}},
	}
	for i := range 2 {
		if err := bus.EnsureTopics(ctx, opts, specs); err != nil {
			t.Fatalf("EnsureTopics, call %d: %v", i+1, err)
		}
	}
	for _, s := range specs {
		ends, err := bus.EndOffsets(ctx, opts, s.Name)
		if err != nil {
			t.Fatal(err)
		}
		if len(ends) != s.Partitions {
			t.Errorf("%s has %d partitions, want %d", s.Name, len(ends), s.Partitions)
		}
	}
}

func testCompression(t *testing.T, opts bus.Options) {
	ctx := ctxFor(t, time.Minute)
	topic := Unique(t, "topic")
	mustTopic(t, ctx, opts, topic, 1)
	codecs := []bus.Compression{bus.CompressionZstd, bus.CompressionLZ4, bus.CompressionSnappy, bus.CompressionGzip, bus.CompressionNone}
	want := map[string]bool{}
	for _, c := range codecs {
		p, err := bus.NewProducer(bus.ProducerOptions{Options: opts, Compression: c})
		if err != nil {
			t.Fatal(err)
		}
		var msgs []bus.Message
		for i := range 20 {
			v := fmt.Sprintf("%s-%02d-%s", c, i, strings.Repeat("x", 150))
			want[v] = true
			msgs = append(msgs, bus.Message{Topic: topic, Key: []byte("k"), Value: []byte(v),
				Headers: []bus.Header{{Key: bus.HeaderSchema, Value: []byte("1.0")}}})
		}
		if err := p.Produce(ctx, msgs...); err != nil {
			t.Fatalf("Produce with %s: %v", c, err)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
	}
	c := newConsumer(t, opts, Unique(t, "group"), topic)
	for len(want) > 0 {
		m, err := c.Fetch(ctx)
		if err != nil {
			t.Fatalf("Fetch with %d messages missing: %v", len(want), err)
		}
		if !want[string(m.Value)] {
			t.Fatalf("unexpected message %q", m.Value)
		}
		if v, ok := m.Header(bus.HeaderSchema); !ok || string(v) != "1.0" {
			t.Fatalf("header %s = %q, %v", bus.HeaderSchema, v, ok)
		}
		delete(want, string(m.Value))
	}
}

func testHundredThousand(t *testing.T, opts bus.Options) {
	const (
		n          = 100_000
		partitions = 6
		producers  = 4
		chunk      = 1000
		commitN    = 500
	)
	ctx := ctxFor(t, 5*time.Minute)
	topic, group := Unique(t, "topic"), Unique(t, "group")
	mustTopic(t, ctx, opts, topic, partitions)

	start := time.Now()
	p := newProducer(t, opts)
	pad := strings.Repeat("p", 190)
	var wg sync.WaitGroup
	errs := make(chan error, producers)
	for w := range producers {
		wg.Go(func() {
			for lo := w * (n / producers); lo < (w+1)*(n/producers); lo += chunk {
				msgs := make([]bus.Message, 0, chunk)
				for i := lo; i < lo+chunk; i++ {
					msgs = append(msgs, bus.Message{Topic: topic, Key: fmt.Appendf(nil, "entity-%03d", i%270), Value: fmt.Appendf(nil, "%08d|%s", i, pad)})
				}
				if err := p.Produce(ctx, msgs...); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("producing: %v", err)
	}
	produced := time.Since(start)

	// Two members of one group consume and commit every commitN messages.
	start = time.Now()
	var (
		mu       sync.Mutex
		seen     = make([]uint16, n)
		distinct int
		total    int
		done     = make(chan struct{})
	)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range 2 {
		c := newConsumer(t, opts, group, topic)
		wg.Go(func() {
			var batch []bus.Message
			for {
				m, err := c.Fetch(cctx)
				if err != nil {
					if cctx.Err() == nil {
						t.Errorf("Fetch: %v", err)
					}
					return
				}
				id, err := strconv.Atoi(string(m.Value[:8]))
				if err != nil || id < 0 || id >= n {
					t.Errorf("message %d/%d holds unknown value %q", m.Partition, m.Offset, m.Value[:8])
					return
				}
				batch = append(batch, m)
				mu.Lock()
				seen[id]++
				total++
				if seen[id] == 1 {
					distinct++
					if distinct == n {
						close(done)
					}
				}
				mu.Unlock()
				if len(batch) >= commitN {
					if err := c.Commit(cctx, batch...); err != nil && cctx.Err() == nil {
						t.Errorf("Commit: %v", err)
					}
					batch = batch[:0]
				}
			}
		})
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
	cancel()
	wg.Wait()
	consumed := time.Since(start)
	missing := 0
	for _, c := range seen {
		if c == 0 {
			missing++
		}
	}
	t.Logf("%d messages: produced in %s (%.0f msgs/s), consumed in %s by 2 group members: %d deliveries, %d distinct, %d missing, %d duplicates",
		n, produced.Round(time.Millisecond), n/produced.Seconds(), consumed.Round(time.Millisecond), total, distinct, missing, total-distinct)
	if missing > 0 {
		t.Fatalf("%d of %d messages never delivered", missing, n)
	}
}

// testKilledConsumer runs a consumer in a subprocess, SIGKILLs it after it
// committed part of the topic, and checks that a new member of the same
// group resumes exactly at the committed offsets.
func testKilledConsumer(t *testing.T, opts bus.Options) {
	const (
		n          = 6000
		partitions = 3
		killAfter  = 2000
	)
	ctx := ctxFor(t, 3*time.Minute)
	topic, group := Unique(t, "topic"), Unique(t, "group")
	mustTopic(t, ctx, opts, topic, partitions)
	p := newProducer(t, opts)
	msgs := make([]bus.Message, n)
	for i := range msgs {
		msgs[i] = bus.Message{Topic: topic, Key: fmt.Appendf(nil, "entity-%d", i%97), Value: fmt.Appendf(nil, "%d", i)}
	}
	if err := p.Produce(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	ends, err := bus.EndOffsets(ctx, opts, topic)
	if err != nil {
		t.Fatal(err)
	}

	// Re-executes this very test binary: the arguments are constants.
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+HelperTestName+"$", "-test.count=1") //nolint:gosec // G204: our own test binary
	cmd.Env = append(os.Environ(), envHelper+"=kill-consumer", envBrokers+"="+strings.Join(opts.Brokers, ","), envTopic+"="+topic, envGroup+"="+group)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting helper consumer: %v", err)
	}
	// Kill it in the middle of a batch: after it committed killAfter
	// messages and processed part of the next batch.
	var reportedCommitted, reportedProcessed int
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		var c, pr int
		if _, err := fmt.Sscanf(sc.Text(), "committed %d", &c); err == nil {
			reportedCommitted = c
		} else if _, err := fmt.Sscanf(sc.Text(), "processed %d", &pr); err == nil {
			reportedProcessed = pr
		}
		if reportedCommitted >= killAfter && reportedProcessed >= reportedCommitted+helperBatch/2 {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatalf("killing helper: %v", err)
			}
			break
		}
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper consumer ended with %v before it was killed (committed %d)", err, reportedCommitted)
	}

	committed, err := bus.CommittedOffsets(ctx, opts, group, topic)
	if err != nil {
		t.Fatal(err)
	}
	var sumCommitted int64
	for _, o := range committed {
		sumCommitted += max(o, 0)
	}
	if sumCommitted < int64(reportedCommitted) || sumCommitted >= n {
		t.Fatalf("broker holds %d committed messages (%v); the killed consumer reported %d of %d", sumCommitted, committed, reportedCommitted, n)
	}

	// The successor must start each partition at its committed offset and
	// read every later message once.
	start := time.Now()
	c := newConsumer(t, opts, group, topic)
	next := make(map[int]int64, partitions)
	for part, o := range committed {
		next[part] = max(o, 0)
	}
	remaining := int64(n) - sumCommitted
	var read int64
	for read < remaining {
		m, err := c.Fetch(ctx)
		if err != nil {
			t.Fatalf("successor Fetch after %d of %d: %v", read, remaining, err)
		}
		if m.Offset != next[m.Partition] {
			t.Fatalf("successor read %d/%d, want offset %d (committed %v)", m.Partition, m.Offset, next[m.Partition], committed)
		}
		next[m.Partition]++
		read++
		if read%500 == 0 || read == remaining {
			if err := c.Commit(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
	}
	for part, end := range ends {
		if next[part] != end {
			t.Errorf("partition %d: successor stopped at %d, end %d", part, next[part], end)
		}
	}
	t.Logf("killed consumer: committed %d (reported %d), processed >= %d; successor took over in %s and read %d: lost 0, duplicates %d (the uncommitted tail)",
		sumCommitted, reportedCommitted, reportedProcessed, time.Since(start).Round(time.Millisecond), read, max(int64(reportedProcessed)-sumCommitted, 0))
}

// Helper is the body of the subprocess test named HelperTestName. Outside
// the subprocess it returns at once.
func Helper(t *testing.T) {
	if os.Getenv(envHelper) != "kill-consumer" {
		return
	}
	opts := bus.Options{Brokers: strings.Split(os.Getenv(envBrokers), ",")}
	c, err := bus.NewConsumer(bus.ConsumerOptions{Options: opts, GroupID: os.Getenv(envGroup), Topics: []string{os.Getenv(envTopic)}, SessionTimeout: 6 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var batch []bus.Message
	committed, processed := 0, 0
	for {
		m, err := c.Fetch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Microsecond) // "processing": lets the parent kill mid-batch
		batch = append(batch, m)
		processed++
		fmt.Printf("processed %d\n", processed)
		if len(batch) == helperBatch {
			if err := c.Commit(ctx, batch...); err != nil {
				t.Fatal(err)
			}
			committed += len(batch)
			batch = batch[:0]
			fmt.Printf("committed %d\n", committed)
		}
	}
}

func testPoison(t *testing.T, opts bus.Options) {
	const n = 30
	ctx := ctxFor(t, 2*time.Minute)
	topic, dlqTopic, group := Unique(t, "topic"), Unique(t, "dlq"), Unique(t, "group")
	mustTopic(t, ctx, opts, topic, 3)
	mustTopic(t, ctx, opts, dlqTopic, 1)
	p := newProducer(t, opts)
	var msgs []bus.Message
	for i := range n {
		v := fmt.Sprintf("m%02d", i)
		if i == 10 {
			v = "poison"
		}
		msgs = append(msgs, bus.Message{Topic: topic, Key: []byte("entity-7"), Value: []byte(v),
			Headers: []bus.Header{{Key: bus.HeaderSchema, Value: []byte("1.0")}}})
	}
	if err := p.Produce(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	failedAt := time.Date(2026, 11, 22, 23, 59, 0, 123, time.UTC)
	dlq, err := bus.NewDLQ(bus.DLQOptions{Sender: p, Topic: dlqTopic, Now: func() time.Time { return failedAt }})
	if err != nil {
		t.Fatal(err)
	}
	handle := func(m bus.Message) error {
		if string(m.Value) == "poison" {
			return errors.New("handler: boom: cannot parse")
		}
		return nil
	}

	c := newConsumer(t, opts, group, topic)
	var poison bus.Message
	var got []string
	for len(got)+1 < n || poison.Topic == "" {
		m, err := c.Fetch(ctx)
		if err != nil {
			t.Fatalf("Fetch after %d: %v", len(got), err)
		}
		if herr := handle(m); herr != nil {
			if err := dlq.Send(ctx, m, herr); err != nil {
				t.Fatal(err)
			}
			poison = m
		} else {
			got = append(got, string(m.Value))
		}
		if err := c.Commit(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if got[len(got)-1] != fmt.Sprintf("m%02d", n-1) {
		t.Errorf("messages after the poison did not flow: last %q", got[len(got)-1])
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	committed, err := bus.CommittedOffsets(ctx, opts, group, topic)
	if err != nil {
		t.Fatal(err)
	}
	if committed[poison.Partition] != n {
		t.Errorf("partition %d committed at %d, want %d", poison.Partition, committed[poison.Partition], n)
	}

	dc := newConsumer(t, opts, Unique(t, "dlqgroup"), dlqTopic)
	d, err := dc.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	header := func(k string) string {
		v, ok := d.Header(k)
		if !ok {
			t.Errorf("dead letter lacks header %s", k)
		}
		return string(v)
	}
	checks := []struct{ name, got, want string }{
		{"key", string(d.Key), "entity-7"},
		{"value", string(d.Value), "poison"},
		{bus.HeaderError, header(bus.HeaderError), "handler: boom: cannot parse"},
		{bus.HeaderSourceTopic, header(bus.HeaderSourceTopic), topic},
		{bus.HeaderSourcePartition, header(bus.HeaderSourcePartition), strconv.Itoa(poison.Partition)},
		{bus.HeaderSourceOffset, header(bus.HeaderSourceOffset), strconv.FormatInt(poison.Offset, 10)},
		{bus.HeaderFailedAt, header(bus.HeaderFailedAt), "2026-11-22T23:59:00.000000123Z"},
		{bus.HeaderSchema, header(bus.HeaderSchema), "1.0"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("dead letter %s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if poison.Offset != 10 {
		t.Errorf("poison read at offset %d, want 10", poison.Offset)
	}
}
