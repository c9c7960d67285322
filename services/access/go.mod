module github.com/mailfleet/mailfleet/services/access

go 1.26.0

replace (
	github.com/mailfleet/mailfleet/pkg => ../../pkg
	github.com/mailfleet/mailfleet/proto => ../../proto
)
