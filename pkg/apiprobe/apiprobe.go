// Package apiprobe calls any method of the storage API by name, with any
// request: the authorization tests go through every method the API has
// (read from its descriptors, so a method added later is probed too).
package apiprobe

import (
	"context"
	"fmt"
	"sort"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// Method is one RPC of the API.
type Method struct {
	// Name is the full gRPC method name, "/package.Service/Method".
	Name                         string
	Input, Output                protoreflect.MessageType
	ClientStreams, ServerStreams bool
}

// files whose services the storage tier serves.
var files = []protoreflect.FileDescriptor{
	storagev1.File_mailfleet_storage_v1_accounts_proto,
	storagev1.File_mailfleet_storage_v1_mailboxes_proto,
	storagev1.File_mailfleet_storage_v1_messages_proto,
	storagev1.File_mailfleet_storage_v1_delivery_proto,
	storagev1.File_mailfleet_storage_v1_watch_proto,
	storagev1.File_mailfleet_storage_v1_queue_proto,
	storagev1.File_mailfleet_storage_v1_types_proto,
	healthpb.File_grpc_health_v1_health_proto,
}

// Methods returns every method of every service the storage tier serves,
// sorted by name.
func Methods() ([]Method, error) {
	var out []Method
	seen := map[protoreflect.FullName]bool{}
	// Every file of the storage package, including any added later.
	all := append([]protoreflect.FileDescriptor{}, files...)
	protoregistry.GlobalFiles.RangeFilesByPackage("mailfleet.storage.v1", func(fd protoreflect.FileDescriptor) bool {
		all = append(all, fd)
		return true
	})
	for _, fd := range all {
		for i := 0; i < fd.Services().Len(); i++ {
			sd := fd.Services().Get(i)
			if seen[sd.FullName()] {
				continue
			}
			seen[sd.FullName()] = true
			for j := 0; j < sd.Methods().Len(); j++ {
				md := sd.Methods().Get(j)
				in, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
				if err != nil {
					return nil, err
				}
				outType, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
				if err != nil {
					return nil, err
				}
				out = append(out, Method{
					Name:  fmt.Sprintf("/%s/%s", sd.FullName(), md.Name()),
					Input: in, Output: outType,
					ClientStreams: md.IsStreamingClient(), ServerStreams: md.IsStreamingServer(),
				})
			}
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out, nil
}

// Call sends req (an empty request when nil) to m and returns the error of
// the first answer: nil when the call was served.
func Call(ctx context.Context, conn grpc.ClientConnInterface, m Method, req proto.Message) error {
	if req == nil {
		req = m.Input.New().Interface()
	}
	resp := m.Output.New().Interface()
	if !m.ClientStreams && !m.ServerStreams {
		return conn.Invoke(ctx, m.Name, req, resp)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // a server stream (Watch) need not be read to its end
	stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: m.ClientStreams, ServerStreams: m.ServerStreams}, m.Name)
	if err != nil {
		return err
	}
	if err := stream.SendMsg(req); err != nil {
		// The server may have answered already; its status is in RecvMsg.
		return stream.RecvMsg(resp)
	}
	if err := stream.CloseSend(); err != nil {
		return err
	}
	return stream.RecvMsg(resp)
}
