package pairing

//go:generate go tool stringer -type=Kind,Reason,Role,State -linecomment -output=names_string.go
