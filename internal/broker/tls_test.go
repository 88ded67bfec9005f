package broker_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/broker"
	"github.com/csirt-toscana/platform/internal/bus"
)

// issue returns a certificate signed by parent (self-signed when parent is nil).
func issue(t *testing.T, tmpl *x509.Certificate, parent *tls.Certificate) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Minute), time.Now().Add(time.Hour)
	signer, signerKey := tmpl, any(key)
	if parent != nil {
		signer, signerKey = parent.Leaf, parent.PrivateKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func TestMutualTLS(t *testing.T) {
	ca := issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "test CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}, nil)
	server := issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "broker"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, &ca)
	client := issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "agent"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, &ca)
	pool := x509.NewCertPool()
	pool.AddCert(ca.Leaf)

	b, err := broker.Start(broker.Options{Addr: freeAddr(t), TLS: &tls.Config{
		Certificates: []tls.Certificate{server}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12,
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	clientTLS := &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{client}, MinVersion: tls.VersionTLS12}
	opts := bus.Options{Brokers: []string{b.Addr()}, TLS: clientTLS}
	if err := bus.EnsureTopics(ctx, opts, []bus.TopicSpec{{Name: "tls.topic", Partitions: 1}}); err != nil {
		t.Fatalf("EnsureTopics over mTLS: %v", err)
	}
	p, err := bus.NewProducer(bus.ProducerOptions{Options: opts})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Produce(ctx, bus.Message{Topic: "tls.topic", Value: []byte("hello")}); err != nil {
		t.Fatalf("Produce over mTLS: %v", err)
	}
	got := consume(ctx, t, opts, "tls.group", "tls.topic", 1)
	if string(got[0].Value) != "hello" {
		t.Errorf("consumed %q", got[0].Value)
	}

	noCert := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
	defer scancel()
	if _, err := bus.EndOffsets(sctx, bus.Options{Brokers: []string{b.Addr()}, TLS: noCert}, "tls.topic"); err == nil {
		t.Error("the broker accepted a client without a certificate")
	}
}
