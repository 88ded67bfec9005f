package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/finding"
	"github.com/csirt-toscana/platform/internal/incident"
	"github.com/csirt-toscana/platform/internal/policy"
	"github.com/csirt-toscana/platform/internal/store"
	"github.com/csirt-toscana/platform/internal/store/elastic"
	"github.com/csirt-toscana/platform/internal/testenv"
)

// central is the regional centre of the test: a configuration shared by a
// collector process and a correlator process, as in a cluster.
type central struct {
	t         *testing.T
	bin, cfg  string
	work      string
	collector *testenv.Proc
	correl    *testenv.Proc
	httpColl  string
	httpCorr  string
	intake    string
	st        store.Store // the test's own indices (per-run prefix)
}

// requireCentral stops the test early (before anything is built) when
// Elasticsearch or the dev CA is missing: it fails under CI=true and skips
// elsewhere.
func requireCentral(t *testing.T) {
	t.Helper()
	testenv.Elasticsearch(t)
	testenv.DevCA(t)
}

// startCentral starts the centre of one test on the private broker k and
// the real Elasticsearch: `csirt collector` (with the enrolment intake) and
// `csirt correlator` (with the incident stage) as two processes sharing one
// configuration, on indices of a per-run prefix that are dropped at the end
// of the test. csirt is the built csirt binary.
func startCentral(t *testing.T, csirt string, k *testenv.PrivateKafka) *central {
	t.Helper()
	esURL := testenv.Elasticsearch(t)
	caCert, caKey := testenv.DevCA(t)
	work := t.TempDir()
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	prefix := "e2e-" + hex.EncodeToString(suffix)
	st, err := elastic.Open(context.Background(), elastic.Options{Addresses: []string{esURL}, IndexPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Drop(context.Background()); err != nil {
			t.Logf("dropping the test's indices %s-*: %v", prefix, err)
		}
		_ = st.Close()
	})

	ports := testenv.FreePorts(t, 3)
	c := &central{t: t, bin: csirt, cfg: filepath.Join(work, "csirt.yml"), work: work, st: st,
		httpColl: fmt.Sprintf("127.0.0.1:%d", ports[0]), httpCorr: fmt.Sprintf("127.0.0.1:%d", ports[1]), intake: fmt.Sprintf("127.0.0.1:%d", ports[2])}
	cfg := fmt.Sprintf(`data_dir: %s
shutdown_timeout: 20s
log:
  level: info
http:
  listen: %s
bus:
  brokers: [%s]
  topics:
    partitions: 3
store:
  backend: elasticsearch
  elasticsearch:
    addresses: [%s]
    index_prefix: %s
    replicas: 0
intake:
  listen: %s
  kafka_bootstrap: [%s]
pki:
  local:
    ca_cert_file: %s
    ca_key_file: %s
correlator:
  snapshot_interval: 1s
`, filepath.Join(work, "data"), c.httpColl, k.PlainAddr(), esURL, prefix, c.intake, k.TLSAddr(), caCert, caKey)
	if err := os.WriteFile(c.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c.collector = testenv.NewProc(t, csirt, "collector", "--config", c.cfg)
	c.collector.Start()
	waitHealthy(t, c.collector, c.httpColl)
	c.correl = testenv.NewProc(t, csirt, "correlator", "--config", c.cfg, "--listen", c.httpCorr)
	c.correl.Start()
	waitHealthy(t, c.correl, c.httpCorr)
	return c
}

func (c *central) cli(args ...string) string {
	c.t.Helper()
	cmd := exec.Command(c.bin, append(args, "--config", c.cfg)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		c.t.Fatalf("csirt %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

// enrolAgent registers the entity (id, display name) with the policy pol,
// enrols a real csirt-agent (agentBin) with a one-time token and starts
// `csirt-agent run`. It returns the agent process and its state directory.
func (c *central) enrolAgent(agentBin, id, name string, pol policy.Policy) (*testenv.Proc, string) {
	t := c.t
	t.Helper()
	c.cli("admin", "entity", "add", id, "--name", name)
	polFile := filepath.Join(c.work, "policy-"+id+".json")
	b, err := json.Marshal(pol)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(polFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	c.cli("admin", "policy", "set", "--entity", id, polFile)
	tok := strings.TrimSpace(c.cli("admin", "token", "create", "--entity", id))
	stateDir := filepath.Join(c.work, "agent-state-"+id)
	agentCfg := filepath.Join(c.work, "agent-"+id+".yml")
	if err := os.WriteFile(agentCfg, []byte("state_dir: "+stateDir+"\nlog:\n  level: info\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	enrol := exec.Command(agentBin, "enroll", "--server", "https://"+c.intake, "--token", tok, "--config", agentCfg)
	if out, err := enrol.CombinedOutput(); err != nil || !strings.Contains(string(out), "Kafka") {
		t.Fatalf("csirt-agent enroll: %v\n%s", err, out)
	}
	agent := testenv.NewProc(t, agentBin, "run", "--config", agentCfg)
	agent.Start()
	return agent, stateDir
}

// stop stops the agents given and the centre with SIGTERM; each must exit
// cleanly within a minute.
func (c *central) stop(agents ...*testenv.Proc) {
	c.t.Helper()
	for _, p := range append(agents, c.correl, c.collector) {
		if err := p.Term(time.Minute); err != nil {
			c.t.Errorf("%s %s exit after SIGTERM: %v", filepath.Base(p.Name), p.Args[0], err)
		}
	}
}

// waitHealthy polls http://addr/healthz until it answers 200.
func waitHealthy(t *testing.T, p *testenv.Proc, addr string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		res, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			_ = res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		if exited, err := p.Exited(); exited {
			t.Fatalf("%s exited before it was healthy: %v", p.Name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s was not healthy within 2 minutes", p.Name)
}

// findingsOf reads every finding of the entity from the store.
func findingsOf(t *testing.T, st store.Store, entity string) []*finding.Finding {
	t.Helper()
	ctx := context.Background()
	if err := st.Refresh(ctx, store.Findings); err != nil {
		t.Fatal(err)
	}
	res, err := st.Search(ctx, store.TenantScope(entity), store.Findings, store.SearchRequest{Size: store.MaxPage})
	if err != nil {
		t.Fatal(err)
	}
	var out []*finding.Finding
	for _, d := range res.Docs {
		f, err := finding.Decode(d.Source)
		if err != nil {
			t.Fatalf("finding %s: %v", d.ID, err)
		}
		out = append(out, f)
	}
	return out
}

// incidentsOf reads every incident of the entity from the store.
func incidentsOf(t *testing.T, st store.Store, entity string) []*incident.Incident {
	t.Helper()
	ctx := context.Background()
	if err := st.Refresh(ctx, store.Incidents); err != nil {
		t.Fatal(err)
	}
	res, err := st.Search(ctx, store.TenantScope(entity), store.Incidents, store.SearchRequest{Size: store.MaxPage})
	if err != nil {
		t.Fatal(err)
	}
	var out []*incident.Incident
	for _, d := range res.Docs {
		in, err := incident.Decode(d.Source)
		if err != nil {
			t.Fatalf("incident %s: %v", d.ID, err)
		}
		out = append(out, in)
	}
	return out
}

// waitFor polls cond every 250 ms until it holds; the test fails after d.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
