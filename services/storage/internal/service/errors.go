package service

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/storage/internal/etcdtx"
)

type reason = storagev1.ErrorReason

const (
	reasonOverQuota       = storagev1.ErrorReason_ERROR_REASON_OVER_QUOTA
	reasonAccountNotFound = storagev1.ErrorReason_ERROR_REASON_ACCOUNT_NOT_FOUND
	reasonMailboxNotFound = storagev1.ErrorReason_ERROR_REASON_MAILBOX_NOT_FOUND
	reasonMailboxExists   = storagev1.ErrorReason_ERROR_REASON_MAILBOX_EXISTS
	reasonMessageNotFound = storagev1.ErrorReason_ERROR_REASON_MESSAGE_NOT_FOUND
	reasonDomainNotFound  = storagev1.ErrorReason_ERROR_REASON_DOMAIN_NOT_FOUND
	reasonAddressExists   = storagev1.ErrorReason_ERROR_REASON_ADDRESS_EXISTS
	reasonAuthFailed      = storagev1.ErrorReason_ERROR_REASON_AUTH_FAILED
	reasonLoginLocked     = storagev1.ErrorReason_ERROR_REASON_LOGIN_LOCKED
	reasonTooLarge        = storagev1.ErrorReason_ERROR_REASON_MESSAGE_TOO_LARGE
	reasonInvalid         = storagev1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT
	reasonDomainNotEmpty  = storagev1.ErrorReason_ERROR_REASON_DOMAIN_NOT_EMPTY
	reasonProtected       = storagev1.ErrorReason_ERROR_REASON_MAILBOX_PROTECTED
	reasonHasChildren     = storagev1.ErrorReason_ERROR_REASON_MAILBOX_HAS_CHILDREN
	reasonLeaseLost       = storagev1.ErrorReason_ERROR_REASON_LEASE_LOST
	reasonQueueNotFound   = storagev1.ErrorReason_ERROR_REASON_QUEUE_ITEM_NOT_FOUND
	reasonTooMany         = storagev1.ErrorReason_ERROR_REASON_TOO_MANY_ITEMS
	reasonInUse           = storagev1.ErrorReason_ERROR_REASON_IN_USE
	reasonTemporary       = storagev1.ErrorReason_ERROR_REASON_TEMPORARY
)

// codeOf is the gRPC code that goes with each reason.
var codeOf = map[reason]codes.Code{
	reasonOverQuota:       codes.FailedPrecondition,
	reasonAccountNotFound: codes.NotFound,
	reasonMailboxNotFound: codes.NotFound,
	reasonMailboxExists:   codes.AlreadyExists,
	reasonMessageNotFound: codes.NotFound,
	reasonDomainNotFound:  codes.NotFound,
	reasonAddressExists:   codes.AlreadyExists,
	reasonAuthFailed:      codes.Unauthenticated,
	reasonLoginLocked:     codes.ResourceExhausted,
	reasonTooLarge:        codes.ResourceExhausted,
	reasonInvalid:         codes.InvalidArgument,
	reasonDomainNotEmpty:  codes.FailedPrecondition,
	reasonProtected:       codes.FailedPrecondition,
	reasonHasChildren:     codes.FailedPrecondition,
	reasonLeaseLost:       codes.FailedPrecondition,
	reasonQueueNotFound:   codes.NotFound,
	reasonTooMany:         codes.ResourceExhausted,
	reasonInUse:           codes.FailedPrecondition,
	reasonTemporary:       codes.Unavailable,
}

// fail returns the status error for reason with a message.
func fail(r reason, format string, args ...any) error {
	return storagev1.Error(codeOf[r], r, fmt.Sprintf(format, args...))
}

// errInvalid is a shortcut for the most common failure.
func errInvalid(format string, args ...any) error { return fail(reasonInvalid, format, args...) }

// toStatus turns any error from the layers below into a status error: status
// errors pass through; context ends keep their code; everything else (etcd or
// body store trouble) is a temporary failure, with the cause in the message
// for the logs of the caller.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	// NOSPACE is certain (nothing was written) and lasts until space is
	// reclaimed, not a blip that an immediate retry gets past: keep etcd's
	// ResourceExhausted and say what happened. The reason stays temporary.
	if errors.Is(err, rpctypes.ErrNoSpace) || errors.Is(err, rpctypes.ErrGRPCNoSpace) {
		return storagev1.Error(codes.ResourceExhausted, reasonTemporary,
			"etcd database is full (NOSPACE alarm): writes are refused until space is reclaimed; try again later")
	}
	if storagev1.ReasonOf(err) != storagev1.ErrorReason_ERROR_REASON_UNSPECIFIED {
		return err // ours already
	}
	if _, ok := status.FromError(err); ok && status.Code(err) != codes.Unknown {
		if errors.Is(err, rpctypes.ErrGRPCNoLeader) || status.Code(err) == codes.Unavailable {
			return fail(reasonTemporary, "etcd unavailable: %v", err)
		}
		return err
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "request canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return fail(reasonTemporary, "deadline exceeded")
	case etcdtx.IsUncertain(err):
		return fail(reasonTemporary, "%v", err)
	}
	return fail(reasonTemporary, "storage backend: %v", err)
}
