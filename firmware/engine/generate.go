package engine

//go:generate go tool stringer -type=Mode,Role,PeerState,DataState,MirrorState,Recovery,LineLoss,Path,FrameKind,Command,DropReason,LeaseState -linecomment -output=names_string.go
