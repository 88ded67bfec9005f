package enroll

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/csirt-toscana/platform/internal/envelope"
)

func TestTokenRoundTripAndHash(t *testing.T) {
	pin := sha256.Sum256([]byte("ca"))
	tok, err := NewToken(pin)
	if err != nil {
		t.Fatal(err)
	}
	s := tok.String()
	if !strings.HasPrefix(s, TokenPrefix+".") || len(s) != len(TokenPrefix)+3+tokenIDLen+tokenSecretLen+tokenPinLen {
		t.Fatalf("token %q has the wrong shape", s)
	}
	got, err := ParseToken("  " + s + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if got != tok {
		t.Fatalf("round trip: %+v != %+v", got, tok)
	}
	if !got.SecretMatches(tok.SecretHash()) {
		t.Fatal("secret does not match its own hash")
	}
	other, _ := NewToken(pin)
	if other.ID == tok.ID || other.Secret == tok.Secret || other.SecretMatches(tok.SecretHash()) {
		t.Fatal("two tokens share id or secret")
	}
	if strings.Contains(tok.SecretHash(), tok.Secret) {
		t.Fatal("hash contains the secret")
	}
}

func TestParseTokenErrorsNeverQuoteTheSecret(t *testing.T) {
	tok, _ := NewToken(sha256.Sum256([]byte("ca")))
	s := tok.String()
	parts := strings.Split(s, ".")
	for name, in := range map[string]string{
		"empty":       "",
		"three parts": strings.Join(parts[:3], "."),
		"prefix":      "cse2." + strings.Join(parts[1:], "."),
		"id":          strings.Join([]string{parts[0], "ABCDEFGHIJ", parts[2], parts[3]}, "."),
		"secret":      strings.Join([]string{parts[0], parts[1], parts[2] + "a", parts[3]}, "."),
		"pin":         strings.Join([]string{parts[0], parts[1], parts[2], parts[3][:42] + "!"}, "."),
	} {
		_, err := ParseToken(in)
		if !errors.Is(err, ErrTokenFormat) {
			t.Errorf("%s: %v, want ErrTokenFormat", name, err)
			continue
		}
		if strings.Contains(err.Error(), tok.Secret) {
			t.Errorf("%s: error quotes the secret: %v", name, err)
		}
	}
}

func TestFramesRoundTrip(t *testing.T) {
	envs := [][]byte{[]byte("one"), bytes.Repeat([]byte{7}, 1000), []byte("x")}
	var body []byte
	for _, e := range envs {
		body = AppendFrame(body, e)
	}
	got, err := SplitFrames(body)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(envs) {
		t.Fatalf("%d frames, want %d", len(got), len(envs))
	}
	for i := range envs {
		if !bytes.Equal(got[i], envs[i]) {
			t.Fatalf("frame %d differs", i)
		}
	}
}

func TestSplitFramesRefusals(t *testing.T) {
	huge := binary.BigEndian.AppendUint32(nil, envelope.MaxBatchSize+1)
	many := []byte{}
	for range MaxFrames + 1 {
		many = AppendFrame(many, []byte{1})
	}
	for name, c := range map[string]struct {
		body []byte
		want string
	}{
		"empty":     {nil, "empty"},
		"short len": {[]byte{0, 0}, "truncated"},
		"zero":      {[]byte{0, 0, 0, 0}, "outside"},
		"huge":      {append(huge, 1), "outside"},
		"past end":  {[]byte{0, 0, 0, 5, 1, 2}, "past the end"},
		"trailing":  {append(AppendFrame(nil, []byte("ok")), 0, 0), "truncated"},
		"too many":  {many, "more than"},
	} {
		_, err := SplitFrames(c.body)
		var fe *FrameError
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want a FrameError mentioning %q", name, err, c.want)
		}
	}
}

func TestServerErrorIs(t *testing.T) {
	for code, want := range codeErrors {
		err := error(&ServerError{Status: 403, Code: code, Message: "m"})
		if !errors.Is(err, want) {
			t.Errorf("%s does not match its error", code)
		}
	}
	err := error(&ServerError{Status: 403, Code: CodeTokenExpired})
	if errors.Is(err, ErrTokenUsedUp) || errors.Is(err, ErrTokenUnknown) {
		t.Fatal("an expired token matches other refusals")
	}
}
