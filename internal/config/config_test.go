package config

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"
)

func TestDefaultsAreValid(t *testing.T) {
	cfg, err := Load("")
	require.NoError(t, err)
	require.True(t, cfg.Embedded())
	require.Equal(t, "sqlite", cfg.Store.Backend)
	require.Equal(t, filepath.Join("csirt-data", "store.db"), cfg.SQLitePath())
	require.LessOrEqual(t, cfg.Bus.Producer.BatchTimeout.D(), 50*time.Millisecond)
}

func TestGoodFile(t *testing.T) {
	cfg, err := Load("testdata/good.yml")
	require.NoError(t, err)
	require.Equal(t, "debug", cfg.Log.Level)
	require.Equal(t, []string{"kafka1:9093", "kafka2:9093"}, cfg.Bus.Brokers)
	require.Equal(t, 20*time.Millisecond, cfg.Bus.Producer.BatchTimeout.D())
	require.Equal(t, "s3cr3t-value", cfg.Bus.SASL.Password.Value())
	require.Equal(t, 30*24*time.Hour, cfg.Store.Elasticsearch.Retention["events"].D())
	require.Equal(t, 14*24*time.Hour, cfg.Store.Elasticsearch.Retention["sshd"].D())
	// Defaults survive where the file is silent.
	require.Equal(t, 6, cfg.Bus.Topics.Partitions)
	require.Equal(t, 365*24*time.Hour, cfg.Store.Elasticsearch.Retention["findings"].D())
}

func TestBadFilesNameTheKey(t *testing.T) {
	cases := map[string]string{
		"unknown_key.bad.yml":      "unknown_key.bad.yml:3: key store.sqlit: unknown key",
		"wrong_type.bad.yml":       "wrong_type.bad.yml:3: key bus.topics.partitions: cannot unmarshal !!str `many` into int",
		"missing_required.bad.yml": "missing_required.bad.yml: key store.elasticsearch.addresses: is required",
		"batch_timeout.bad.yml":    "batch_timeout.bad.yml: key bus.producer.batch_timeout: must be more than 0 and at most 50ms",
		"bad_duration.bad.yml":     `bad_duration.bad.yml:1: key shutdown_timeout: "soon" is not a duration`,
		"missing_secret.bad.yml":   "missing_secret.bad.yml: key store.elasticsearch.password_file: reading secret file",
		"syntax.bad.yml":           "syntax.bad.yml:1: ",
	}
	for file, want := range cases {
		_, err := Load(filepath.Join("testdata", file))
		require.Error(t, err, file)
		require.Contains(t, err.Error(), want, file)
		require.Contains(t, err.Error(), filepath.Join("testdata", file))
	}
}

func TestSecretFromEnvironment(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "pw")
	require.NoError(t, os.WriteFile(p, []byte("from-env\n"), 0o600))
	t.Setenv("CSIRT_STORE_ELASTICSEARCH_PASSWORD_FILE", p)
	cfg, err := Load("")
	require.NoError(t, err)
	require.Equal(t, "from-env", cfg.Store.Elasticsearch.Password.Value())
}

func TestSecretsNeverPrinted(t *testing.T) {
	cfg, err := Load("testdata/good.yml")
	require.NoError(t, err)
	dump, err := cfg.Dump()
	require.NoError(t, err)
	js, err := json.Marshal(cfg)
	require.NoError(t, err)
	var logged strings.Builder
	log := logrus.New()
	log.SetOutput(&logged)
	log.SetFormatter(&logrus.JSONFormatter{})
	log.WithField("config", cfg).WithField("pw", cfg.Bus.SASL.Password).Info("loaded")
	for name, out := range map[string]string{
		"dump": string(dump), "json": string(js), "log": logged.String(),
		"%v": fmt.Sprintf("%v", cfg), "%+v": fmt.Sprintf("%+v", cfg), "%#v": fmt.Sprintf("%#v", cfg),
		"%s": fmt.Sprintf("%s", cfg.Bus.SASL.Password), "%q": fmt.Sprintf("%q", cfg.Bus.SASL.Password),
	} {
		require.NotContains(t, out, "s3cr3t", name)
	}
	require.Contains(t, string(dump), "[redacted]")
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"10ms": 10 * time.Millisecond, "7d": 7 * 24 * time.Hour, "1.5d": 36 * time.Hour, "2w": 14 * 24 * time.Hour} {
		got, err := ParseDuration(in)
		require.NoError(t, err)
		require.Equal(t, want, got)
	}
	for _, in := range []string{"", "d", "x7d", "7 days"} {
		_, err := ParseDuration(in)
		require.Error(t, err, in)
	}
}
