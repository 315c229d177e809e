"""The pages: the live page of a run and the studio. Imports only the layers below."""
