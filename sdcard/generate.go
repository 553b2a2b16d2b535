package sdcard

//go:generate go tool stringer -type=HashKind,RoundMode -linecomment -output=names_string.go
