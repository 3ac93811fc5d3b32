package awsproxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
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
	case CloudFront:
		return p.classifyCloudFront(r)
	case KMS:
		return p.classifyKMS(r, body)
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

// cloudFrontOps names CloudFront's operations on public keys, key
// groups and distributions (those a key rotation makes) by method,
// collection and how many path segments follow it. Each IAM action has
// the operation's name.
var cloudFrontOps = map[string]string{
	"POST public-key 0":     "CreatePublicKey",
	"GET public-key 0":      "ListPublicKeys",
	"GET public-key 1":      "GetPublicKey",
	"DELETE public-key 1":   "DeletePublicKey",
	"POST key-group 0":      "CreateKeyGroup",
	"GET key-group 0":       "ListKeyGroups",
	"GET key-group 1":       "GetKeyGroup",
	"DELETE key-group 1":    "DeleteKeyGroup",
	"GET distribution 1":    "GetDistribution",
	"GET distribution 2":    "GetDistributionConfig",
	"PUT distribution 2":    "UpdateDistribution",
	"GET public-key 2":      "GetPublicKeyConfig",
	"GET key-group 2":       "GetKeyGroupConfig",
	"PUT public-key 1":      "UpdatePublicKey",
	"PUT key-group 1":       "UpdateKeyGroup",
	"DELETE distribution 1": "DeleteDistribution",
}

// classifyCloudFront reads CloudFront's REST-XML API:
// /2020-05-31/COLLECTION[/ID[/config]]. Public keys and key groups take
// no resource-level permission ("*"); a distribution's operations are
// authorised on its ARN.
func (p *Proxy) classifyCloudFront(r *http.Request) (Call, error) {
	path, ok := strings.CutPrefix(r.URL.EscapedPath(), "/2020-05-31/")
	if !ok {
		return Call{}, fmt.Errorf("%s %s is not a CloudFront 2020-05-31 request", r.Method, r.URL.EscapedPath())
	}
	parts := strings.Split(strings.TrimSuffix(path, "/"), "/")
	if len(parts) == 3 && parts[2] != "config" {
		return Call{}, fmt.Errorf("%s %s is not an operation the proxy knows", r.Method, r.URL.EscapedPath())
	}
	op := cloudFrontOps[fmt.Sprintf("%s %s %d", r.Method, parts[0], len(parts)-1)]
	if op == "" {
		return Call{}, fmt.Errorf("%s %s is not a CloudFront operation the proxy knows", r.Method, r.URL.EscapedPath())
	}
	resource := "*"
	if parts[0] == "distribution" {
		id, err := url.PathUnescape(parts[1])
		if err != nil {
			return Call{}, fmt.Errorf("%s: distribution id %q: %v", op, parts[1], err)
		}
		resource = "arn:" + iam.Partition(p.opts.Region) + ":cloudfront::" + p.opts.Account + ":distribution/" + id
	}
	return Call{Service: CloudFront, Operation: op, Checks: []Check{{Action: "cloudfront:" + op, Resources: []string{resource}}}}, nil
}

// classifyKMS reads KMS's JSON protocol: X-Amz-Target names the
// operation, whose IAM action has the same name, and the body's KeyId
// the key. A request on a key is authorised on the key's ARN with its
// tags as aws:ResourceTag/KEY, which the proxy asks the emulator for
// (DescribeKey, ListResourceTags), as AWS reads them: the policies
// grant the signing keys by tag. CreateKey with Tags needs
// kms:TagResource too.
func (p *Proxy) classifyKMS(r *http.Request, body []byte) (Call, error) {
	op, ok := strings.CutPrefix(r.Header.Get("X-Amz-Target"), "TrentService.")
	if !ok || op == "" || r.Method != http.MethodPost {
		return Call{}, fmt.Errorf("not a KMS request (%s %s, X-Amz-Target %q)", r.Method, r.URL.Path, r.Header.Get("X-Amz-Target"))
	}
	var in struct {
		KeyID string            `json:"KeyId"`
		Tags  []json.RawMessage `json:"Tags"`
	}
	if len(body) > 0 {
		if err := json.Unmarshal(body, &in); err != nil {
			return Call{}, fmt.Errorf("%s: body is not JSON: %v", op, err)
		}
	}
	c := Call{Service: KMS, Operation: op}
	switch {
	case op == "CreateKey":
		c.Checks = []Check{{Action: "kms:CreateKey", Resources: []string{"*"}}}
		if len(in.Tags) > 0 {
			c.Checks = append(c.Checks, Check{Action: "kms:TagResource", Resources: []string{"*"}})
		}
	case in.KeyID != "":
		arn, tags, err := p.kmsKey(r, in.KeyID)
		if err != nil {
			// A key the emulator does not know: no tags, so a policy
			// that grants by tag denies it, as AWS does.
			p.logf("%s: key %s: %v", op, in.KeyID, err)
			arn = in.KeyID
			if !strings.HasPrefix(arn, "arn:") {
				arn = "arn:" + iam.Partition(p.opts.Region) + ":kms:" + p.opts.Region + ":" + p.opts.Account + ":key/" + in.KeyID
			}
		}
		cond := map[string]string{}
		for k, v := range tags {
			cond["aws:ResourceTag/"+k] = v
		}
		c.Checks = []Check{{Action: "kms:" + op, Resources: []string{arn}, Context: cond}}
	default:
		c.Checks = []Check{{Action: "kms:" + op, Resources: []string{"*"}}} // ListKeys and the like
	}
	return c, nil
}

// kmsKey asks the emulator for a key's ARN and tags, with r's
// credentials (an emulator checks no signature, but may route by the
// credential scope).
func (p *Proxy) kmsKey(r *http.Request, keyID string) (string, map[string]string, error) {
	call := func(op string, in, out any) error {
		b, _ := json.Marshal(in)
		req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, p.target.String(), bytes.NewReader(b))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", r.Header.Get("Authorization"))
		req.Header.Set("X-Amz-Target", "TrentService."+op)
		req.Header.Set("Content-Type", "application/x-amz-json-1.1")
		resp, err := p.upstream.RoundTrip(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		rb, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s: %s", op, resp.Status, rb)
		}
		return json.Unmarshal(rb, out)
	}
	var desc struct {
		KeyMetadata struct {
			Arn string `json:"Arn"`
		} `json:"KeyMetadata"`
	}
	if err := call("DescribeKey", map[string]string{"KeyId": keyID}, &desc); err != nil {
		return "", nil, err
	}
	var list struct {
		Tags []struct{ TagKey, TagValue string } `json:"Tags"`
	}
	if err := call("ListResourceTags", map[string]string{"KeyId": desc.KeyMetadata.Arn}, &list); err != nil {
		return "", nil, err
	}
	tags := map[string]string{}
	for _, t := range list.Tags {
		tags[t.TagKey] = t.TagValue
	}
	return desc.KeyMetadata.Arn, tags, nil
}
