package storagev1

import (
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrorDomain is the google.rpc.ErrorInfo domain of every storage error.
const ErrorDomain = "storage.mailfleet.io"

// Error builds a gRPC status error carrying reason as google.rpc.ErrorInfo, the
// stable part frontends match on. msg is for logs and admins.
func Error(code codes.Code, reason ErrorReason, msg string) error {
	st := status.New(code, msg)
	withDetails, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason.String(), Domain: ErrorDomain})
	if err != nil {
		return st.Err()
	}
	return withDetails.Err()
}

// ReasonOf returns the ErrorReason carried by a storage error, or
// ERROR_REASON_UNSPECIFIED if there is none (for example a transport error).
func ReasonOf(err error) ErrorReason {
	if err == nil {
		return ErrorReason_ERROR_REASON_UNSPECIFIED
	}
	var withStatus interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &withStatus) {
		return ErrorReason_ERROR_REASON_UNSPECIFIED
	}
	for _, d := range withStatus.GRPCStatus().Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == ErrorDomain {
			return ErrorReason(ErrorReason_value[info.Reason])
		}
	}
	return ErrorReason_ERROR_REASON_UNSPECIFIED
}

// IsTemporary reports whether err is worth retrying later: the storage tier
// said so, or the transport failed before an answer came.
func IsTemporary(err error) bool {
	if ReasonOf(err) == ErrorReason_ERROR_REASON_TEMPORARY {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.ResourceExhausted:
		return ReasonOf(err) == ErrorReason_ERROR_REASON_UNSPECIFIED || ReasonOf(err) == ErrorReason_ERROR_REASON_TEMPORARY
	}
	return false
}
