package frame

//go:generate go tool stringer -type=Type -linecomment -output=names_string.go
