"""What a command runs: the schedules (an image run, a clip), the report and the comparison table,
and the files a run leaves. Imports only the layers below."""
