module github.com/mailfleet/mailfleet/services/submission

go 1.26.0
