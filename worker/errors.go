package worker

import "errors"

// The pipeline sorts every failure into one of three classes, and each
// class says what happens to the message:
//
//   - transient (the default): the message is left on the queue and is
//     tried again after its visibility timeout; the queue's RedrivePolicy
//     decides when it has been tried often enough.
//   - permanent: trying again cannot help, so the message goes to the
//     dead-letter queue at once, with the reason recorded.
//   - ambiguous: an email may or may not have been accepted. The delivery
//     is left claimed in the ledger, so no later try sends it again
//     unless an operator asks for it.
//   - halt: nothing more can be sent in this run (the sending quota is
//     spent). The run stops receiving and sending, and hands back the
//     messages it holds, untouched, for a later run.
//
// Adapters wrap the errors they return with [Permanent], [Ambiguous] or
// [Halt];
// anything unwrapped is transient.

type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

type ambiguousError struct{ err error }

func (e ambiguousError) Error() string { return e.err.Error() }
func (e ambiguousError) Unwrap() error { return e.err }

type haltError struct{ err error }

func (e haltError) Error() string { return e.err.Error() }
func (e haltError) Unwrap() error { return e.err }

// Halt marks err as one that ends the run's sending: the email was
// certainly not sent, and no other email should be tried now. It
// returns nil for a nil err.
func Halt(err error) error {
	if err == nil {
		return nil
	}
	return haltError{err}
}

// IsHalt reports whether err, or any error it wraps, was marked with
// [Halt].
func IsHalt(err error) bool {
	var h haltError
	return errors.As(err, &h)
}

// Permanent marks err as one that retrying cannot fix. It returns nil
// for a nil err.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// Ambiguous marks err as one after which the effect (an email accepted)
// may or may not have happened. It returns nil for a nil err.
func Ambiguous(err error) error {
	if err == nil {
		return nil
	}
	return ambiguousError{err}
}

// IsPermanent reports whether err, or any error it wraps, was marked
// with [Permanent].
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// IsAmbiguous reports whether err, or any error it wraps, was marked
// with [Ambiguous].
func IsAmbiguous(err error) bool {
	var a ambiguousError
	return errors.As(err, &a)
}
