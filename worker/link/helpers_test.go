package link

import (
	"crypto"
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
)

func keys(tb testing.TB) (*rsa.PrivateKey, *rsa.PrivateKey) {
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
	})
	if testKey == nil {
		tb.Fatal("test keys were not generated")
	}
	return testKey, otherKey
}

const (
	testKeyID  = "K2JCJMDEHXQW5F"
	otherKeyID = "K3OTHERKEYID01"
)

// lookup trusts the two test keys.
func lookup(tb testing.TB) KeyLookup {
	k, o := keys(tb)
	return func(id string) (crypto.PublicKey, bool) {
		switch id {
		case testKeyID:
			return &k.PublicKey, true
		case otherKeyID:
			return &o.PublicKey, true
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
}
