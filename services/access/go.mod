module github.com/mailfleet/mailfleet/services/access

go 1.26.0
