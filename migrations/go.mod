module stripe-webhooks/migrations

go 1.26
