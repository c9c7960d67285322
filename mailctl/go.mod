module github.com/mailfleet/mailfleet/mailctl

go 1.26.0

require (
	github.com/mailfleet/mailfleet/proto v0.0.0
	google.golang.org/grpc v1.85.0
)

require (
	github.com/emersion/go-imap/v2 v2.0.0-beta.8
	github.com/emersion/go-message v0.18.2 // indirect
	github.com/emersion/go-sasl v0.0.0-20241020182733-b788ff22d5a6 // indirect
)

require (
	github.com/mailfleet/mailfleet/pkg v0.0.0
	golang.org/x/net v0.60.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
	golang.org/x/text v0.42.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260817212433-ac3dfec99bb1 // indirect
	google.golang.org/protobuf v1.36.12
)

replace github.com/mailfleet/mailfleet/proto => ../proto

replace github.com/mailfleet/mailfleet/pkg => ../pkg
