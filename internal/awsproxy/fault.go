package awsproxy

import (
	"net/http"
	"slices"
	"sync/atomic"
)

// Fault is a failure to inject into matching requests.
//
// Before the emulator (After false), the request never reaches it: the
// client sees an error, and nothing happened. After the emulator (After
// true), the emulator has applied the request, and then the client sees
// an error or a reset instead of its answer: the case of a conditional
// PutObject that succeeded but whose answer was lost, so the SDK retries
// it and gets 412 against its own write, or a SendEmail that SES accepted.
type Fault struct {
	// Operation is the API operation to fail, e.g. "PutObject"; "" fails
	// every operation.
	Operation string
	// Match, when set, must also hold, e.g. for one key prefix only.
	Match func(Call) bool
	// After injects the fault once the emulator has applied the request.
	After bool
	// Reset closes the connection with a TCP RST and no answer. Otherwise
	// the client gets an error answer with Status and Code.
	Reset bool
	// Status is the HTTP status of the error answer. Default 500.
	Status int
	// Code is the error code; default the service's for Status: S3
	// SlowDown for 503 and 429, InternalError for 500; SQS
	// ServiceUnavailable, RequestThrottled, InternalFailure; SES
	// ServiceUnavailable, TooManyRequestsException, InternalFailure.
	Code string
	// Message is the error message. Default "injected by awsproxy".
	Message string
	// ErrorType, for SES only, is the x-amzn-ErrorType header exactly as
	// written, where it differs from Code: AWS's REST-JSON services may
	// append the error's namespace, as in
	// "MessageRejected:http://internal.amazon.com/coral/com.amazonaws.sesv2/",
	// and a client must read the code before the colon. Default Code.
	// Ignored for S3 and SQS.
	ErrorType string
	// Times is how many requests get the fault; 0 means every matching
	// request.
	Times int
	// Probability is the chance that a matching request gets the fault,
	// drawn from the proxy's seeded source; 0 means always.
	Probability float64
}

// Rule is an injected fault, as Inject returns it.
type Rule struct {
	fault    Fault
	p        *Proxy
	injected atomic.Int64
}

// Injected is how many requests this rule has failed.
func (r *Rule) Injected() int { return int(r.injected.Load()) }

// Remove stops the rule; the faults it injected stay counted.
func (r *Rule) Remove() {
	r.p.mu.Lock()
	defer r.p.mu.Unlock()
	r.p.rules = slices.DeleteFunc(r.p.rules, func(x *Rule) bool { return x == r })
}

// Inject adds a fault. Rules are tried in the order they were added, and
// the first that matches (and, with a Probability, is drawn) fails the
// request.
func (p *Proxy) Inject(f Fault) *Rule {
	if f.Status == 0 {
		f.Status = http.StatusInternalServerError
	}
	if f.Code == "" {
		f.Code = defaultCode(p.opts.Service, f.Status)
	}
	if f.Message == "" {
		f.Message = "injected by awsproxy"
	}
	r := &Rule{fault: f, p: p}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules = append(p.rules, r)
	return r
}

// ClearFaults removes every fault rule.
func (p *Proxy) ClearFaults() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules = nil
}

// fault returns the rule that fails this request at this point, if any,
// and counts it.
func (p *Proxy) fault(call Call, after bool) *Rule {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.rules {
		f := r.fault
		if f.After != after || (f.Operation != "" && f.Operation != call.Operation) || (f.Match != nil && !f.Match(call)) {
			continue
		}
		if f.Times > 0 && r.Injected() >= f.Times {
			continue
		}
		if f.Probability > 0 && p.rng.Float64() >= f.Probability {
			continue
		}
		r.injected.Add(1)
		if c := p.counts[call.Operation]; c != nil {
			c.Injected++
		}
		return r
	}
	return nil
}

// inject answers the request with the rule's fault.
func (p *Proxy) inject(w http.ResponseWriter, r *http.Request, call Call, rule *Rule) {
	f := rule.fault
	when := "before"
	if f.After {
		when = "after"
	}
	if f.Reset {
		p.logf("FAULT %s: connection reset %s the emulator", call.Operation, when)
		if err := resetConn(w); err != nil {
			p.logf("FAULT %s: reset: %v", call.Operation, err)
		}
		return
	}
	p.logf("FAULT %s: %d %s %s the emulator", call.Operation, f.Status, f.Code, when)
	p.write(w, r, awsError{Status: f.Status, Code: f.Code, Message: f.Message, ErrorType: f.ErrorType})
}
