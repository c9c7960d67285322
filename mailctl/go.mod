module github.com/mailfleet/mailfleet/mailctl

go 1.26.0
