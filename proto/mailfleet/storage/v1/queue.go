package storagev1

import (
	"context"

	"google.golang.org/grpc"
)

// QueueLister is the part of QueueServiceClient that ListAllQueue needs.
type QueueLister interface {
	ListQueue(ctx context.Context, in *ListQueueRequest, opts ...grpc.CallOption) (*ListQueueResponse, error)
}

// ListAllQueue calls fn with every page of the outbound queue, in item id
// order, until the last page or fn's first error.
func ListAllQueue(ctx context.Context, q QueueLister, fn func(items []*QueueItem) error) error {
	req := &ListQueueRequest{}
	for {
		resp, err := q.ListQueue(ctx, req)
		if err != nil {
			return err
		}
		if err := fn(resp.Items); err != nil {
			return err
		}
		if resp.NextAfterId == "" {
			return nil
		}
		req.AfterId = resp.NextAfterId
	}
}
