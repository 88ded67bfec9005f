// Package testenv tells tests where the real services started by
// deploy/dev/services are (Kafka, Kafka with mutual TLS, Elasticsearch) and
// where the shared third-party test data lives. When a service or the data
// is missing, a test fails if CI=true and skips with a message naming the
// command to run otherwise: CI never silently skips.
package testenv

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// Environment variables written by `deploy/dev/services env`.
const (
	EnvKafka        = "CSIRT_TEST_KAFKA"         // host:port of the plaintext listener
	EnvKafkaMTLS    = "CSIRT_TEST_KAFKA_MTLS"    // host:port of the mutual-TLS listener
	EnvKafkaTLSDir  = "CSIRT_TEST_KAFKA_TLS_DIR" // ca.pem, client.pem, client-key.pem
	EnvKafkaVersion = "CSIRT_TEST_KAFKA_VERSION"
	EnvES           = "CSIRT_TEST_ES" // http://host:port
	EnvESVersion    = "CSIRT_TEST_ES_VERSION"
	EnvSharedData   = "CSIRT_SHARED_DATA" // overrides ../shared/data
)

// InCI reports whether the tests run in CI (CI=true).
func InCI() bool { return os.Getenv("CI") == "true" }

// Unavailable stops a test whose real prerequisite (a program, root, a
// capability, libpcap) is missing: it fails under CI=true, where
// deploy/dev/test provides everything, and skips elsewhere. msg says what
// is missing and how to get it.
func Unavailable(t testing.TB, msg string) {
	t.Helper()
	if InCI() {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func missing(t testing.TB, what string) {
	t.Helper()
	msg := what + " is not available: start it with `deploy/dev/services up` and `eval $(deploy/dev/services env)`"
	if InCI() {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// Kafka returns the bootstrap address of the real Kafka broker.
func Kafka(t testing.TB) string {
	t.Helper()
	addr := os.Getenv(EnvKafka)
	if addr == "" {
		missing(t, "Kafka ("+EnvKafka+")")
	}
	return addr
}

// KafkaMTLS returns the address of the mutual-TLS listener and a client TLS
// configuration holding the dev CA and a client certificate.
func KafkaMTLS(t testing.TB) (string, *tls.Config) {
	t.Helper()
	addr, dir := os.Getenv(EnvKafkaMTLS), os.Getenv(EnvKafkaTLSDir)
	if addr == "" || dir == "" {
		missing(t, "Kafka mutual-TLS listener ("+EnvKafkaMTLS+", "+EnvKafkaTLSDir+")")
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatalf("reading dev CA: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("no certificate in %s", filepath.Join(dir, "ca.pem"))
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem"))
	if err != nil {
		t.Fatalf("loading dev client certificate: %v", err)
	}
	return addr, &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

// Elasticsearch returns the URL of the real Elasticsearch node.
func Elasticsearch(t testing.TB) string {
	t.Helper()
	u := os.Getenv(EnvES)
	if u == "" {
		missing(t, "Elasticsearch ("+EnvES+")")
	}
	return u
}

// SharedData returns the path of ../shared/data (the real third-party test
// data), or fails in CI / skips elsewhere when it is missing.
func SharedData(t testing.TB) string {
	t.Helper()
	dir := os.Getenv(EnvSharedData)
	if dir == "" {
		_, file, _, _ := runtime.Caller(0)
		// internal/testenv/testenv.go -> repository root -> ../shared/data
		dir = filepath.Join(filepath.Dir(file), "..", "..", "..", "shared", "data")
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		msg := "shared test data not found at " + dir + " (set " + EnvSharedData + ")"
		if InCI() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return dir
}
