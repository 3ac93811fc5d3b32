// Package transport provides the HTTP client that reportmailer's AWS
// clients share.
package transport

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
)

// TimeoutDefault bounds one HTTP exchange. It must exceed the longest
// SQS long poll (20 s), or every empty receive would fail.
const TimeoutDefault = 60 * time.Second

// MaxIdleConnsPerHost is how many idle connections to one endpoint a
// Client built from the SDK's default keeps for reuse.
const MaxIdleConnsPerHost = 256

// maxBuffered is the largest request body copied into memory. SQS and
// SES bodies are far smaller; larger uploads stream as usual.
const maxBuffered = 2 << 20

// Client is an HTTP client for aws-sdk-go-v2 that hands net/http an
// in-memory copy of each small request body.
//
// Why: smithy-go streams request bodies. When a server answers before
// net/http has finished writing the body, net/http tries to drain it,
// gets an error from the already-closed stream and drops the connection
// together with the response it had received (aws-sdk-go-v2#1825,
// #2737, #2935). The SDK then retries, which for SendEmail can deliver
// the same email twice. A rewindable in-memory body with GetBody set
// avoids that path.
type Client struct {
	next aws.HTTPClient
}

// Wrap returns a Client around next, the client the SDK's config
// loading built (nil means the SDK default). Wrapping after loading,
// rather than handing our client to the loader, keeps settings such as
// AWS_CA_BUNDLE working: the loader applies them only to its own
// *BuildableClient. A BuildableClient without an overall timeout gets
// TimeoutDefault.
func Wrap(next aws.HTTPClient) *Client {
	if next == nil {
		next = awshttp.NewBuildableClient()
	}
	if b, ok := next.(*awshttp.BuildableClient); ok {
		if b.GetTimeout() == 0 {
			b = b.WithTimeout(TimeoutDefault)
		}
		// Deliveries run concurrently (schedules[].concurrency, up to
		// 256, each with two S3 writes at once when it claims): with
		// the SDK's 10 idle connections per host and 100 in all, the
		// rest were closed after each request and dialled again.
		next = b.WithTransportOptions(func(t *http.Transport) {
			t.MaxIdleConnsPerHost = max(t.MaxIdleConnsPerHost, MaxIdleConnsPerHost)
			t.MaxIdleConns = max(t.MaxIdleConns, MaxIdleConnsPerHost)
		})
	}
	return &Client{next: next}
}

// Do sends req with its body buffered in memory.
func (c *Client) Do(req *http.Request) (*http.Response, error) {
	if req.Body != nil && req.Body != http.NoBody && req.ContentLength > 0 && req.ContentLength <= maxBuffered {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("read request body: %w", err)
		}
		req.Body = io.NopCloser(bytes.NewReader(b))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	}
	return c.next.Do(req)
}
