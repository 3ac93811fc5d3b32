package awsproxy

import (
	"cmp"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// awsError is an error answer in the shape of the proxy's service.
type awsError struct {
	Status  int
	Code    string
	Message string
	// Resource is S3's <Resource>, the bucket or key path.
	Resource string
	// ErrorType is SES's x-amzn-ErrorType header, when not Code.
	ErrorType string
}

// defaultCode is the error code a service gives with status.
func defaultCode(s Service, status int) string {
	switch {
	case status == http.StatusServiceUnavailable && s == S3:
		return "SlowDown"
	case status == http.StatusServiceUnavailable:
		return "ServiceUnavailable"
	case status == http.StatusTooManyRequests && s == SES:
		return "TooManyRequestsException"
	case status == http.StatusTooManyRequests && s == SQS:
		return "RequestThrottled"
	case status == http.StatusTooManyRequests && s == KMS:
		return "ThrottlingException"
	case status == http.StatusTooManyRequests && s == CloudFront:
		return "Throttling"
	case status == http.StatusTooManyRequests:
		return "SlowDown"
	case status == http.StatusInternalServerError && s == S3:
		return "InternalError"
	case status >= 500:
		return "InternalFailure"
	}
	return strings.ReplaceAll(http.StatusText(status), " ", "")
}

// accessDenied is AWS's answer to a request no policy allows. S3 says
// AccessDenied; SQS's JSON protocol says AccessDeniedException in the
// body and AccessDenied in x-amzn-query-error, which the SDK reports;
// SES v2 says AccessDeniedException.
func (p *Proxy) accessDenied(action, resource string) awsError {
	verb := action
	if p.opts.Service == SQS {
		verb = strings.ToLower(action) // as SQS writes it
	}
	code := "AccessDenied"
	if p.opts.Service == SES || p.opts.Service == KMS {
		code = "AccessDeniedException"
	}
	return awsError{
		Status: http.StatusForbidden,
		Code:   code,
		Message: fmt.Sprintf("User: %s is not authorized to perform: %s on resource: %s because no identity-based policy allows the %s action",
			p.principal(), verb, resource, verb),
	}
}

func (p *Proxy) principal() string {
	return "arn:aws:sts::" + p.opts.Account + ":assumed-role/reportmailer/awsproxy"
}

// write sends e in the wire shape of the service, as the SDK parses it.
// SES v2 (REST-JSON) names the error in the x-amzn-ErrorType header and
// gives only {"message": ...} in the body.
func (p *Proxy) write(w http.ResponseWriter, r *http.Request, e awsError) {
	id := p.requestID()
	h := w.Header()
	var body []byte
	switch p.opts.Service {
	case S3:
		h.Set("X-Amz-Request-Id", id)
		h.Set("X-Amz-Id-2", "awsproxy/"+id)
		h.Set("Content-Type", "application/xml")
		var v struct {
			XMLName   xml.Name `xml:"Error"`
			Code      string   `xml:"Code"`
			Message   string   `xml:"Message"`
			Resource  string   `xml:"Resource,omitempty"`
			RequestID string   `xml:"RequestId"`
			HostID    string   `xml:"HostId"`
		}
		v.Code, v.Message, v.Resource, v.RequestID, v.HostID = e.Code, e.Message, e.Resource, id, "awsproxy/"+id
		b, _ := xml.Marshal(v)
		body = append([]byte(xml.Header), b...)
	case SQS:
		h.Set("X-Amzn-Requestid", id)
		h.Set("Content-Type", "application/x-amz-json-1.0")
		fault := "Sender"
		if e.Status >= 500 {
			fault = "Receiver"
		}
		typ := "com.amazonaws.sqs#" + e.Code
		if e.Code == "AccessDenied" {
			typ = "com.amazon.coral.service#AccessDeniedException"
		}
		h.Set("X-Amzn-Query-Error", e.Code+";"+fault)
		body, _ = json.Marshal(map[string]string{"__type": typ, "message": e.Message})
	case SES:
		h.Set("X-Amzn-Requestid", id)
		h.Set("X-Amzn-Errortype", cmp.Or(e.ErrorType, e.Code))
		h.Set("Content-Type", "application/json")
		body, _ = json.Marshal(map[string]string{"message": e.Message})
	case KMS:
		h.Set("X-Amzn-Requestid", id)
		h.Set("Content-Type", "application/x-amz-json-1.1")
		body, _ = json.Marshal(map[string]string{"__type": e.Code, "message": e.Message})
	case CloudFront:
		h.Set("X-Amzn-Requestid", id)
		h.Set("Content-Type", "text/xml")
		typ := "Sender"
		if e.Status >= 500 {
			typ = "Receiver"
		}
		var v struct {
			XMLName   xml.Name `xml:"ErrorResponse"`
			Type      string   `xml:"Error>Type"`
			Code      string   `xml:"Error>Code"`
			Message   string   `xml:"Error>Message"`
			RequestID string   `xml:"RequestId"`
		}
		v.Type, v.Code, v.Message, v.RequestID = typ, e.Code, e.Message, id
		b, _ := xml.Marshal(v)
		body = append([]byte(xml.Header), b...)
	}
	if r.Method == http.MethodHead {
		body = nil // HEAD answers carry no body, so the SDK sees only the status
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(e.Status)
	w.Write(body)
}
