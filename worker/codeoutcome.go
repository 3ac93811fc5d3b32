package worker

// codeOutcomes is the outcome each code usually comes with, as the
// comments on the codes say: what a dead letter that carries only a
// code (one written before reportmailer-failure) is shown as.
var codeOutcomes = map[Code]Outcome{
	CodeInvalidEvent:       OutcomePermanent,
	CodeInvalidJSON:        OutcomePermanent,
	CodeMissingField:       OutcomePermanent,
	CodeInvalidMetadata:    OutcomePermanent,
	CodeObjectMissing:      OutcomePermanent,
	CodeBucketNotServed:    OutcomePermanent,
	CodeLinkFailed:         OutcomePermanent,
	CodeComposeFailed:      OutcomePermanent,
	CodeRecipientRefused:   OutcomePermanent,
	CodeSESRejected:        OutcomePermanent,
	CodeLedgerUnreadable:   OutcomePermanent,
	CodeMaybeSent:          OutcomeAmbiguous,
	CodeHeadFailed:         OutcomeRetry,
	CodeSendFailed:         OutcomeRetry,
	CodeLedgerFailed:       OutcomeRetry,
	CodeClaimedElsewhere:   OutcomeRetry,
	CodeCopyFailed:         OutcomeRetry,
	CodeObjectAccessDenied: OutcomeHalted,
	CodeHalted:             OutcomeHalted,
	CodeShutdown:           OutcomeHalted,
	CodeThrottled:          OutcomeHalted,
}

// CodeOutcome returns the outcome a failure of code c usually has, or
// "" for a code it does not know.
func CodeOutcome(c Code) Outcome { return codeOutcomes[c] }
