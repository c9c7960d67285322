module github.com/mailfleet/mailfleet/services/inbound

go 1.26.0
