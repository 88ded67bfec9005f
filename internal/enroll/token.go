package enroll

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Token format (version 1), one string a technician pastes:
//
//	cse1.<id>.<secret>.<pin>
//
// id is 10 and secret 26 characters of lower-case base32 (50 and 130
// bits), pin the unpadded base64url SHA-256 of the CA certificate's DER
// (43 characters). The id names the token in listings and revocation; the
// centre stores only the SHA-256 of the secret; the pin lets the agent
// authenticate the intake on first contact without a CA file (the idea of
// kubeadm's discovery token CA hash).
const TokenPrefix = "cse1"

const (
	tokenIDLen     = 10
	tokenSecretLen = 26
	tokenPinLen    = 43
)

var b32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Token is a parsed enrolment token.
type Token struct {
	ID     string
	Secret string
	Pin    [32]byte // SHA-256 of the CA certificate (DER)
}

// ErrTokenFormat wraps every parse failure; it says nothing of the secret.
var ErrTokenFormat = errors.New("malformed enrolment token")

// NewToken makes a token with fresh random id and secret for the CA pin.
func NewToken(pin [32]byte) (Token, error) {
	var b [7 + 17]byte
	if _, err := rand.Read(b[:]); err != nil {
		return Token{}, err
	}
	id := b32.EncodeToString(b[:7])[:tokenIDLen]
	sec := b32.EncodeToString(b[7:])[:tokenSecretLen]
	return Token{ID: id, Secret: sec, Pin: pin}, nil
}

// String formats the token for the technician.
func (t Token) String() string {
	return TokenPrefix + "." + t.ID + "." + t.Secret + "." + base64.RawURLEncoding.EncodeToString(t.Pin[:])
}

// SecretHash is what the centre stores: hex SHA-256 of the secret.
func (t Token) SecretHash() string {
	sum := sha256.Sum256([]byte(t.Secret))
	return hex.EncodeToString(sum[:])
}

// SecretMatches compares the token's secret to a stored SecretHash in
// constant time.
func (t Token) SecretMatches(storedHash string) bool {
	return subtle.ConstantTimeCompare([]byte(t.SecretHash()), []byte(storedHash)) == 1
}

// ParseToken reads a token string. Surrounding white space (from a paste)
// is ignored. Errors never quote the secret.
func ParseToken(s string) (Token, error) {
	s = strings.TrimSpace(s)
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return Token{}, fmt.Errorf("%w: expected 4 parts separated by dots (%s.ID.SECRET.PIN), got %d; copy the whole line printed by `csirt admin token create`", ErrTokenFormat, TokenPrefix, len(parts))
	}
	if parts[0] != TokenPrefix {
		return Token{}, fmt.Errorf("%w: it does not start with %q", ErrTokenFormat, TokenPrefix+".")
	}
	t := Token{ID: parts[1], Secret: parts[2]}
	if len(t.ID) != tokenIDLen || !isB32(t.ID) {
		return Token{}, fmt.Errorf("%w: the id part must be %d characters of a-z 2-7", ErrTokenFormat, tokenIDLen)
	}
	if len(t.Secret) != tokenSecretLen || !isB32(t.Secret) {
		return Token{}, fmt.Errorf("%w: the secret part must be %d characters of a-z 2-7", ErrTokenFormat, tokenSecretLen)
	}
	if len(parts[3]) != tokenPinLen {
		return Token{}, fmt.Errorf("%w: the CA pin part must be %d characters", ErrTokenFormat, tokenPinLen)
	}
	pin, err := base64.RawURLEncoding.Strict().DecodeString(parts[3])
	if err != nil || len(pin) != 32 {
		return Token{}, fmt.Errorf("%w: the CA pin part is not base64url", ErrTokenFormat)
	}
	copy(t.Pin[:], pin)
	return t, nil
}

// ValidTokenID reports whether s has the form of a token id (for
// `token revoke ID`).
func ValidTokenID(s string) bool { return len(s) == tokenIDLen && isB32(s) }

func isB32(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '2' || c > '7') {
			return false
		}
	}
	return true
}
