package edge_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/reportmailer/reportmailer/internal/edge"
	"github.com/reportmailer/reportmailer/internal/s3test"
	"github.com/reportmailer/reportmailer/worker/event"
	"github.com/reportmailer/reportmailer/worker/link"
)

func TestEdge(t *testing.T) {
	ctx := context.Background()
	_, client := s3test.Start(t, "reports")
	// Two objects whose keys differ only in how a naive encoder would
	// treat "+": the edge must serve exactly the one that was signed.
	objects := map[string]string{"q3 results+notes é?#%.pdf": "the right one", "q3 results notes é?#%.pdf": "the wrong one"}
	for k, body := range objects {
		if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("reports"), Key: aws.String(k), Body: strings.NewReader(body)}); err != nil {
			t.Fatal(err)
		}
	}
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	now := time.Now()
	e := &edge.Edge{S3: client, Bucket: "reports", Keys: map[string]crypto.PublicKey{"K1": key.Public()}}
	srv, err := edge.Start(e)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })

	cf := &link.CloudFront{Domain: srv.URL, KeyID: "K1", Key: key, TTL: time.Hour}
	good, err := cf.Sign(ctx, event.Report{Bucket: "reports", Key: "q3 results+notes é?#%.pdf"}, now)
	if err != nil {
		t.Fatal(err)
	}
	expired, _ := cf.Sign(ctx, event.Report{Key: "q3 results+notes é?#%.pdf"}, now.Add(-2*time.Hour))
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	unknown, _ := (&link.CloudFront{Domain: srv.URL, KeyID: "K9", Key: other, TTL: time.Hour}).Sign(ctx, event.Report{Key: "x"}, now)

	tests := []struct {
		name, url, rng string
		status         int
		body           string
	}{
		{"signed link opens exactly its object", good.URL, "", 200, "the right one"},
		{"range request", good.URL, "bytes=4-8", 206, "right"},
		{"tampered path", strings.Replace(good.URL, "notes", "nutes", 1), "", 403, "bad signature"},
		{"tampered expiry", strings.Replace(good.URL, "Expires=", "Expires=9", 1), "", 403, ""},
		{"expired", expired.URL, "", 403, "expired"},
		{"unknown key", unknown.URL, "", 403, "unknown key"},
		{"unsigned", srv.URL + "/q3", "", 403, "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", tt.url, nil)
			if tt.rng != "" {
				req.Header.Set("Range", tt.rng)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status || !strings.Contains(string(b), tt.body) {
				t.Errorf("GET = %d %q, want %d containing %q", resp.StatusCode, b, tt.status, tt.body)
			}
		})
	}
}
