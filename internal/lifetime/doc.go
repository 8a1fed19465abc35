// Package lifetime makes what a process starts end with it, however the
// process ends.
//
//   - [Start] starts a child process that dies with this one. On Linux the
//     child gets PR_SET_PDEATHSIG (SIGKILL). The kernel sends that signal
//     when the parent *thread* that forked the child exits, not the
//     process, and Go's runtime ends a thread when a goroutine locked to
//     it returns without unlocking; so every child is forked from one
//     goroutine that locks its thread and never returns, a thread that
//     lives exactly as long as the process. Other systems have no such
//     signal: there the children are killed by [KillChildren] on the way
//     out, which a SIGKILL of this process skips.
//   - [MkdirTemp] makes a temporary directory marked with its owner: the
//     PID in its name and an exclusive flock(2) on the file .owner inside,
//     which the kernel releases when the process dies, however it dies.
//     [RemoveTemps] removes the directories still registered on the way
//     out, and [Sweep], run by the next program that uses this package,
//     removes those whose owner died without doing so (SIGKILL), as the
//     asset cache does with its stale temporary files.
//   - [DieWithParent] makes this process receive a signal when its parent
//     dies (Linux), so a program killed from above tears down what it
//     started like one sent that signal.
package lifetime
