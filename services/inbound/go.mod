module github.com/mailfleet/mailfleet/services/inbound

go 1.26.0

require (
	github.com/mailfleet/mailfleet/pkg v0.0.0
	github.com/mailfleet/mailfleet/proto v0.0.0
)

require (
	blitiri.com.ar/go/spf v1.6.0 // indirect
	github.com/emersion/go-msgauth v0.7.0 // indirect
	github.com/emersion/go-sasl v0.0.0-20241020182733-b788ff22d5a6 // indirect
	github.com/emersion/go-smtp v0.25.1 // indirect
	github.com/pires/go-proxyproto v0.15.0 // indirect
)

replace (
	github.com/mailfleet/mailfleet/pkg => ../../pkg
	github.com/mailfleet/mailfleet/proto => ../../proto
)
