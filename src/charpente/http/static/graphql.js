// The GraphQL explorer: sends the query to the endpoint named on <body>, shows the answer.
"use strict";
(function () {
  const endpoint = document.body.dataset.endpoint;
  const run = async function () {
    const result = document.getElementById("result");
    let variables = {};
    try {
      variables = JSON.parse(document.getElementById("variables").value || "{}");
    } catch (error) {
      result.textContent = "The variables are not valid JSON: " + error.message;
      return;
    }
    const headers = { "Content-Type": "application/json", "Accept": "application/json" };
    const auth = document.getElementById("auth").value.trim();
    if (auth) {
      headers.Authorization = auth;
    }
    const query = document.getElementById("query").value;
    const answer = await fetch(endpoint, {
      method: "POST",
      headers: headers,
      body: JSON.stringify({ query: query, variables: variables }),
    });
    result.textContent = JSON.stringify(await answer.json(), null, 2);
  };
  document.getElementById("run").addEventListener("click", run);
})();
