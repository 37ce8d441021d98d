module github.com/sluicehq/sluice/tools/mutate

go 1.26.0
