package awsproxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/reportmailer/reportmailer/worker/iam"
)

// Call is what the proxy made of one request: the API operation, and
// the IAM checks AWS would make before it.
type Call struct {
	// Service is the proxy's service.
	Service Service
	// Operation is the API operation, e.g. "ReceiveMessage", "HeadObject"
	// or "SendEmail".
	Operation string
	// Bucket and Key are an S3 request's bucket and (unescaped) key.
	Bucket, Key string
	// QueueURL is an SQS request's QueueUrl.
	QueueURL string
	// Recipients are a SendEmail's destination addresses (To, Cc and
	// Bcc), so that a fault can pick the emails of one test.
	Recipients []string
	// Checks are the authorisations the request needs, all of them.
	Checks []Check
}

// Check is one authorisation: Action on any one of Resources, with the
// request's condition keys.
type Check struct {
	Action    string
	Resources []string
	Context   map[string]string
}

// classify identifies a request. An error means the proxy does not know
// the request, and denies it.
func (p *Proxy) classify(r *http.Request, body []byte) (Call, error) {
	switch p.opts.Service {
	case SQS:
		return p.classifySQS(r, body)
	case S3:
		return p.classifyS3(r)
	case SES:
		return p.classifySES(r, body)
	}
	return Call{}, fmt.Errorf("unknown service %q", p.opts.Service)
}

// sqsBatchActions maps SQS batch operations to the action that
// authorises them.
var sqsBatchActions = map[string]string{
	"SendMessageBatch":             "SendMessage",
	"DeleteMessageBatch":           "DeleteMessage",
	"ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}

// classifySQS reads the JSON protocol: X-Amz-Target names the operation,
// whose IAM action has the same name (batches excepted), and the body's
// QueueUrl (or QueueName) the queue.
func (p *Proxy) classifySQS(r *http.Request, body []byte) (Call, error) {
	op, ok := strings.CutPrefix(r.Header.Get("X-Amz-Target"), "AmazonSQS.")
	if !ok || op == "" || r.Method != http.MethodPost {
		return Call{}, fmt.Errorf("not an SQS JSON-protocol request (%s %s, X-Amz-Target %q); the query protocol is not supported", r.Method, r.URL.Path, r.Header.Get("X-Amz-Target"))
	}
	var in struct {
		QueueURL   string `json:"QueueUrl"`
		QueueName  string `json:"QueueName"`
		QueueOwner string `json:"QueueOwnerAWSAccountId"`
		// SourceArn names the queue of a message move task
		// (StartMessageMoveTask, ListMessageMoveTasks), which AWS
		// authorises on it.
		SourceARN string `json:"SourceArn"`
	}
	if len(body) > 0 {
		if err := json.Unmarshal(body, &in); err != nil {
			return Call{}, fmt.Errorf("%s: body is not JSON: %v", op, err)
		}
	}
	action := op
	if a, ok := sqsBatchActions[op]; ok {
		action = a
	}
	c := Call{Service: SQS, Operation: op, QueueURL: in.QueueURL}
	var resource string
	switch {
	case in.QueueURL != "":
		arn, err := iam.QueueARN(in.QueueURL, p.opts.Region)
		if err != nil {
			return Call{}, fmt.Errorf("%s: %v", op, err)
		}
		resource = arn
	case in.QueueName != "":
		account := p.opts.Account
		if in.QueueOwner != "" {
			account = in.QueueOwner
		}
		resource = "arn:" + iam.Partition(p.opts.Region) + ":sqs:" + p.opts.Region + ":" + account + ":" + in.QueueName
	case in.SourceARN != "":
		resource = in.SourceARN
	default:
		resource = "*" // ListQueues and the like: no resource-level permission
	}
	c.Checks = []Check{{Action: "sqs:" + action, Resources: []string{resource}}}
	return c, nil
}

// objectQuery reports whether every query parameter of an object
// request is one that does not change the operation: the SDK's x-id, a
// presigned URL's X-Amz-*, and GetObject's response-* overrides.
func objectQuery(q url.Values) bool {
	for k := range q {
		if k != "x-id" && !strings.HasPrefix(strings.ToLower(k), "x-amz-") && !strings.HasPrefix(k, "response-") {
			return false
		}
	}
	return true
}

// listQuery reports whether a bucket GET is a plain listing.
func listQuery(q url.Values) bool {
	for k := range q {
		switch k {
		case "list-type", "prefix", "delimiter", "continuation-token", "max-keys", "start-after",
			"fetch-owner", "encoding-type", "marker", "x-id":
		default:
			return false
		}
	}
	return true
}

// classifyS3 reads path-style REST: /BUCKET/KEY. HeadObject is
// authorised by s3:GetObject, and a listing by s3:ListBucket with the
// prefix as s3:prefix.
func (p *Proxy) classifyS3(r *http.Request) (Call, error) {
	path := strings.TrimPrefix(r.URL.EscapedPath(), "/")
	rawBucket, rawKey, _ := strings.Cut(path, "/")
	bucket, err := url.PathUnescape(rawBucket)
	if err != nil {
		return Call{}, fmt.Errorf("bucket %q: %v", rawBucket, err)
	}
	key, err := url.PathUnescape(rawKey)
	if err != nil {
		return Call{}, fmt.Errorf("key %q: %v", rawKey, err)
	}
	q := r.URL.Query()
	part := iam.Partition(p.opts.Region)
	c := Call{Service: S3, Bucket: bucket, Key: key}
	object := []string{iam.ObjectARN(part, bucket, key)}
	bucketARN := []string{iam.BucketARN(part, bucket)}
	switch {
	case bucket == "":
		return Call{}, fmt.Errorf("%s /: only path-style requests to a bucket are supported", r.Method)
	case key != "" && objectQuery(q):
		switch r.Method {
		case http.MethodHead:
			c.Operation = "HeadObject"
			c.Checks = []Check{{Action: "s3:GetObject", Resources: object}}
		case http.MethodGet:
			c.Operation = "GetObject"
			c.Checks = []Check{{Action: "s3:GetObject", Resources: object}}
		case http.MethodPut:
			if r.Header.Get("X-Amz-Copy-Source") != "" {
				return Call{}, fmt.Errorf("CopyObject to %s/%s is not supported", bucket, key)
			}
			c.Operation = "PutObject"
			c.Checks = []Check{{Action: "s3:PutObject", Resources: object}}
		case http.MethodDelete:
			c.Operation = "DeleteObject"
			c.Checks = []Check{{Action: "s3:DeleteObject", Resources: object}}
		}
	case key == "" && r.Method == http.MethodGet && listQuery(q):
		c.Operation = "ListObjects"
		if q.Get("list-type") == "2" {
			c.Operation = "ListObjectsV2"
		}
		check := Check{Action: "s3:ListBucket", Resources: bucketARN}
		if q.Has("prefix") {
			check.Context = map[string]string{"s3:prefix": q.Get("prefix")}
		}
		c.Checks = []Check{check}
	case key == "" && r.Method == http.MethodHead && len(q) == 0:
		c.Operation = "HeadBucket"
		c.Checks = []Check{{Action: "s3:ListBucket", Resources: bucketARN}}
	case key == "" && r.Method == http.MethodPut && (len(q) == 0 || q.Get("x-id") == "CreateBucket"):
		c.Operation = "CreateBucket"
		c.Checks = []Check{{Action: "s3:CreateBucket", Resources: bucketARN}}
	}
	if c.Operation == "" {
		return Call{}, fmt.Errorf("%s %s?%s is not an operation the proxy knows", r.Method, r.URL.EscapedPath(), r.URL.RawQuery)
	}
	// The SDK names most operations in x-id; a different name means a
	// request this classification does not cover.
	if id := q.Get("x-id"); id != "" && id != c.Operation {
		return Call{}, fmt.Errorf("%s %s is %s, not an operation the proxy knows", r.Method, r.URL.EscapedPath(), id)
	}
	return c, nil
}

// classifySES reads SES v2 REST-JSON.
func (p *Proxy) classifySES(r *http.Request, body []byte) (Call, error) {
	path := r.URL.EscapedPath()
	switch {
	case r.Method == http.MethodPost && path == "/v2/email/outbound-emails":
		var in struct {
			From             string `json:"FromEmailAddress"`
			FromIdentityARN  string `json:"FromEmailAddressIdentityArn"`
			ConfigurationSet string `json:"ConfigurationSetName"`
			Destination      struct {
				To  []string `json:"ToAddresses"`
				Cc  []string `json:"CcAddresses"`
				Bcc []string `json:"BccAddresses"`
			}
		}
		if err := json.Unmarshal(body, &in); err != nil {
			return Call{}, fmt.Errorf("SendEmail: body is not JSON: %v", err)
		}
		// SES authorises a send as the identity that verifies the sender:
		// the address's own, or its domain's.
		var identities []string
		if in.FromIdentityARN != "" {
			identities = []string{in.FromIdentityARN}
		} else if addr, domain, ok := iam.SenderIdentities(in.From); ok {
			identities = []string{p.sesARN("identity/" + addr), p.sesARN("identity/" + domain)}
		} else {
			return Call{}, fmt.Errorf("SendEmail: FromEmailAddress %q is not an address", in.From)
		}
		d := in.Destination
		c := Call{Service: SES, Operation: "SendEmail", Recipients: slices.Concat(d.To, d.Cc, d.Bcc), Checks: []Check{{Action: "ses:SendEmail", Resources: identities}}}
		if in.ConfigurationSet != "" {
			c.Checks = append(c.Checks, Check{Action: "ses:SendEmail", Resources: []string{p.sesARN("configuration-set/" + in.ConfigurationSet)}})
		}
		return c, nil
	case r.Method == http.MethodGet && path == "/v2/email/account":
		return Call{Service: SES, Operation: "GetAccount", Checks: []Check{{Action: "ses:GetAccount", Resources: []string{"*"}}}}, nil
	case r.Method == http.MethodGet && strings.HasPrefix(path, "/v2/email/identities/") && strings.Count(path, "/") == 4:
		id, err := url.PathUnescape(strings.TrimPrefix(path, "/v2/email/identities/"))
		if err != nil || id == "" {
			return Call{}, fmt.Errorf("GetEmailIdentity: identity %q", path)
		}
		return Call{Service: SES, Operation: "GetEmailIdentity", Checks: []Check{{Action: "ses:GetEmailIdentity", Resources: []string{p.sesARN("identity/" + id)}}}}, nil
	case r.Method == http.MethodGet && strings.HasPrefix(path, "/v2/email/configuration-sets/") && strings.Count(path, "/") == 4:
		name, err := url.PathUnescape(strings.TrimPrefix(path, "/v2/email/configuration-sets/"))
		if err != nil || name == "" {
			return Call{}, fmt.Errorf("GetConfigurationSet: name %q", path)
		}
		return Call{Service: SES, Operation: "GetConfigurationSet", Checks: []Check{{Action: "ses:GetConfigurationSet", Resources: []string{p.sesARN("configuration-set/" + name)}}}}, nil
	}
	return Call{}, fmt.Errorf("%s %s is not an SES v2 operation the proxy knows", r.Method, path)
}

func (p *Proxy) sesARN(resource string) string {
	return iam.SESARN(p.opts.Region, p.opts.Account, resource)
}
