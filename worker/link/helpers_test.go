package link

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"sync"
	"testing"
	"testing/cryptotest"
)

// Test keys are generated once per test binary. When a test (not a
// benchmark) generates them, the randomness is seeded, so every run
// uses the same keys.
var (
	keysOnce          sync.Once
	testKey, otherKey *rsa.PrivateKey
	testEC, otherEC   *ecdsa.PrivateKey
)

func generateKeys(tb testing.TB) {
	tb.Helper()
	keysOnce.Do(func() {
		if t, ok := tb.(*testing.T); ok {
			cryptotest.SetGlobalRandom(t, 20260101)
		}
		var err error
		if testKey, err = rsa.GenerateKey(nil, 2048); err != nil {
			tb.Fatal(err)
		}
		if otherKey, err = rsa.GenerateKey(nil, 2048); err != nil {
			tb.Fatal(err)
		}
		if testEC, err = ecdsa.GenerateKey(elliptic.P256(), nil); err != nil {
			tb.Fatal(err)
		}
		if otherEC, err = ecdsa.GenerateKey(elliptic.P256(), nil); err != nil {
			tb.Fatal(err)
		}
	})
	if testKey == nil || testEC == nil {
		tb.Fatal("test keys were not generated")
	}
}

// keys returns the two RSA-2048 test keys.
func keys(tb testing.TB) (*rsa.PrivateKey, *rsa.PrivateKey) {
	tb.Helper()
	generateKeys(tb)
	return testKey, otherKey
}

// ecKeys returns the two ECDSA P-256 test keys.
func ecKeys(tb testing.TB) (*ecdsa.PrivateKey, *ecdsa.PrivateKey) {
	tb.Helper()
	generateKeys(tb)
	return testEC, otherEC
}

const (
	testKeyID    = "K2JCJMDEHXQW5F"
	otherKeyID   = "K3OTHERKEYID01"
	testECKeyID  = "KECDSA00000001"
	otherECKeyID = "KECDSA00000002"
)

// lookup trusts the four test keys, by their public halves.
func lookup(tb testing.TB) KeyLookup {
	k, o := keys(tb)
	e, oe := ecKeys(tb)
	return func(id string) (crypto.PublicKey, bool) {
		switch id {
		case testKeyID:
			return &k.PublicKey, true
		case otherKeyID:
			return &o.PublicKey, true
		case testECKeyID:
			return &e.PublicKey, true
		case otherECKeyID:
			return &oe.PublicKey, true
		}
		return nil, false
	}
}

// nastyKeys are object keys that break links when put raw in a URL.
var nastyKeys = []string{
	"reports/Q1 2026/a+b.pdf",
	"x?y#z%41.csv",
	"日本語/報告.pdf",
	"a//b",
	"/leading/slash.pdf",
	"emoji 📈.pdf",
	"semi;colon,comma&amp=eq'quote\"(paren)*star!bang$.txt",
	"tab\tnewline\n.csv",
	"back\\slash/~tilde_under-dash.pdf",
	"...",
	"trailing/",
	"%2B already%20escaped%",
	"Expires=1&Signature=x&Key-Pair-Id=K",
	"\x00\x7f\xff invalid utf-8",
}
