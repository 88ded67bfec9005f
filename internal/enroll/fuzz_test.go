package enroll

import (
	"bytes"
	"crypto/sha256"
	"strings"
	"testing"
)

// FuzzSplitFrames: the /v1/batches body framing never panics, never
// returns frames outside the limits, and re-encoding what it accepted
// gives back the input.
func FuzzSplitFrames(f *testing.F) {
	f.Add([]byte{})
	f.Add(AppendFrame(nil, []byte("CSEB")))
	f.Add(AppendFrame(AppendFrame(nil, []byte("a")), []byte("bc")))
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1})
	f.Add([]byte{0, 0, 0, 3, 1})
	f.Fuzz(func(t *testing.T, body []byte) {
		frames, err := SplitFrames(body)
		if err != nil {
			if frames != nil {
				t.Fatal("frames returned with an error")
			}
			return
		}
		if len(frames) == 0 || len(frames) > MaxFrames {
			t.Fatalf("%d frames accepted", len(frames))
		}
		var re []byte
		for _, fr := range frames {
			if len(fr) == 0 {
				t.Fatal("empty frame accepted")
			}
			re = AppendFrame(re, fr)
		}
		if !bytes.Equal(re, body) {
			t.Fatal("re-encoding differs from the input")
		}
	})
}

// FuzzParseToken: the token parser never panics, accepts only what
// formats back to itself, and never echoes the secret part in its errors.
func FuzzParseToken(f *testing.F) {
	tok, _ := NewToken(sha256.Sum256([]byte("seed CA")))
	f.Add(tok.String())
	f.Add("")
	f.Add("cse1...")
	f.Add("cse1.aaaaaaaaaa.bbbbbbbbbbbbbbbbbbbbbbbbbb.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Add("cse1.aaaaaaaaaa.bbbbbbbbbbbbbbbbbbbbbbbbbb.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
	f.Add(" cse1.AAAAAAAAAA.b.c ")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseToken(s)
		if err != nil {
			// The would-be secret part never appears in the message.
			if p := strings.Split(strings.TrimSpace(s), "."); len(p) >= 3 && len(p[2]) >= 8 && strings.Contains(err.Error(), p[2]) {
				t.Fatalf("error echoes the secret part: %v", err)
			}
			return
		}
		if got.String() != strings.TrimSpace(s) {
			t.Fatalf("accepted %q but formats as %q", s, got.String())
		}
		if again, err := ParseToken(got.String()); err != nil || again != got {
			t.Fatalf("re-parse: %+v %v", again, err)
		}
	})
}
