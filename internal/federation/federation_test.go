package federation

import (
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/airlock-dev/airlock/internal/workspace"
)

func testKey(t *testing.T, name string) *NodeKey {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParseSigner(skey, vkey)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestEnvelopesVerifyOnlyUnderTheirKeyAndBytes(t *testing.T) {
	a, b := testKey(t, "a"), testKey(t, "b")
	sr, err := a.Seal(Envelope{From: "a", To: "b", SQL: "SELECT 1", Nonce: NewNonce(), IssuedAt: time.Now(), NotAfter: time.Now().Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if e, err := Open(sr, a.Public()); err != nil || e.SQL != "SELECT 1" || e.V != EnvelopeVersion {
		t.Fatalf("open: %+v %v", e, err)
	}
	if _, err := Open(sr, b.Public()); err == nil {
		t.Error("verified under another key")
	}
	tampered := sr
	tampered.Envelope = []byte(strings.Replace(string(sr.Envelope), "SELECT 1", "SELECT 2", 1))
	if _, err := Open(tampered, a.Public()); err == nil {
		t.Error("a tampered envelope verified")
	}
	// A signature made for another purpose (a receipt) is not an envelope's.
	other := SignedRequest{Envelope: sr.Envelope, Signature: a.sign(receiptLabel, sr.Envelope)}
	if _, err := Open(other, a.Public()); err == nil {
		t.Error("a receipt signature verified as an envelope's")
	}
}

func TestVerifierKeysAreChecked(t *testing.T) {
	k := testKey(t, "stmary")
	if name, pub, err := ParseVerifier(k.Verifier); err != nil || name != "stmary" || !pub.Equal(k.Public()) {
		t.Fatalf("%q %v", name, err)
	}
	parts := strings.SplitN(k.Verifier, "+", 3)
	if _, _, err := ParseVerifier("stjohn+" + parts[1] + "+" + parts[2]); err == nil {
		t.Error("a key renamed to another node verified")
	}
	if _, err := ParseSigner("PRIVATE+KEY+x+00000000+AAAA", k.Verifier); err == nil {
		t.Error("a malformed signer key parsed")
	}
}

func TestCosignaturesFollowTheC2SPFormat(t *testing.T) {
	w := testKey(t, "witness")
	body := "airlock/stmary\n7\nMfZUZdlM0fiM5XgJOYdAsxYgBkawqV29IlO1K/8M/qA=\n"
	at := time.Unix(1764000000, 0)
	line := w.Cosign(body, at)
	peer := &workspace.Peer{Name: "witness", Key: w.Verifier}
	if got, err := VerifyCosignature(body, line, peer); err != nil || !got.Equal(at) {
		t.Fatalf("verify: %v %v", got, err)
	}
	if !strings.HasPrefix(line, "— witness ") {
		t.Errorf("line %q", line)
	}
	if _, err := VerifyCosignature(strings.Replace(body, "7", "8", 1), line, peer); err == nil {
		t.Error("a cosignature verified on another checkpoint")
	}
	// The note library ignores cosignature lines (another key id), so a
	// cosigned checkpoint still opens with the log's key alone.
	log := testKey(t, "stmary")
	signer, _ := note.NewSigner(mustSigner(t, log))
	signed, _ := note.Sign(&note.Note{Text: body}, signer)
	cosigned := string(signed) + line
	v, _ := note.NewVerifier(log.Verifier)
	if _, err := note.Open([]byte(cosigned), note.VerifierList(v)); err != nil {
		t.Fatalf("cosigned note does not open with the log's key: %v", err)
	}
}

// mustSigner rebuilds a note signer key from a NodeKey (tests only).
func mustSigner(t *testing.T, k *NodeKey) string {
	t.Helper()
	parts := strings.SplitN(k.Verifier, "+", 3)
	return "PRIVATE+KEY+" + k.Name + "+" + parts[1] + "+" + base64.StdEncoding.EncodeToString(append([]byte{1}, k.priv.Seed()...))
}
